//! One peer of the userspace device: its noise state machine, endpoint and counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use boringtun::noise::Tunn;
use boringtun::x25519::StaticSecret;

use crate::wg::{PeerConfig, PeerStatus};

/// A peer. Shared by the data-path threads; the `Tunn` is behind its own lock so peers never
/// contend with each other.
pub(crate) struct Peer {
    /// The session index (24 bits; boringtun uses the low 8 bits of the wire index for sessions).
    pub index: u32,
    tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
    config: Mutex<PeerConfig>,
    keepalive: AtomicU16,
    /// Milliseconds since `epoch` when we last sent anything to this peer.
    last_sent: AtomicU64,
    epoch: Instant,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    /// The wall-clock handshake time last reported. boringtun only knows "time since", so the
    /// wall-clock value is computed once per session to stay stable between reads.
    last_handshake: Mutex<Option<SystemTime>>,
}

pub(crate) fn new_tunn(secret: &StaticSecret, config: &PeerConfig, index: u32) -> Tunn {
    // Persistent keepalive is done by our timer loop so that changing it does not reset the
    // session; boringtun's own rate limiter per Tunn is kept (None).
    Tunn::new(
        secret.clone(),
        config.public_key.to_dalek(),
        config
            .preshared_key
            .as_ref()
            .map(crate::wg::PresharedKey::to_bytes),
        None,
        index,
        None,
    )
}

impl Peer {
    pub fn new(secret: &StaticSecret, config: PeerConfig, index: u32) -> Self {
        Self {
            index,
            tunn: Mutex::new(new_tunn(secret, &config, index)),
            endpoint: Mutex::new(config.endpoint),
            keepalive: AtomicU16::new(config.persistent_keepalive.unwrap_or(0)),
            config: Mutex::new(config),
            last_sent: AtomicU64::new(0),
            epoch: Instant::now(),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            last_handshake: Mutex::new(None),
        }
    }

    /// Locks the noise state; a poisoned lock (a panicked thread) is taken over, as the state
    /// machine stays consistent between calls.
    #[inline]
    pub fn tunn(&self) -> MutexGuard<'_, Tunn> {
        self.tunn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn config(&self) -> PeerConfig {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    #[inline]
    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Roaming: the source of an authenticated packet becomes the endpoint.
    #[inline]
    pub fn set_endpoint(&self, addr: SocketAddr) {
        let mut ep = self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *ep != Some(addr) {
            *ep = Some(addr);
        }
    }

    /// Applies a changed configuration in place. Only a changed preshared key restarts the
    /// session (it is part of the handshake); everything else keeps it.
    pub fn update(&self, secret: &StaticSecret, new: PeerConfig) {
        let mut cfg = self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cfg.preshared_key != new.preshared_key {
            *self.tunn() = new_tunn(secret, &new, self.index);
        }
        if cfg.endpoint != new.endpoint && new.endpoint.is_some() {
            *self
                .endpoint
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = new.endpoint;
        }
        self.keepalive
            .store(new.persistent_keepalive.unwrap_or(0), Ordering::Relaxed);
        *cfg = new;
    }

    #[inline]
    pub fn keepalive(&self) -> u16 {
        self.keepalive.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn sent(&self, bytes: usize) {
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_sent
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn received(&self, bytes: usize) {
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Milliseconds since we last sent to this peer.
    pub fn idle_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64)
            .saturating_sub(self.last_sent.load(Ordering::Relaxed))
    }

    fn stable_handshake_time(&self, now: Option<SystemTime>) -> Option<SystemTime> {
        let mut cached = self
            .last_handshake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = match (*cached, now) {
            (Some(c), Some(n)) => n
                .duration_since(c)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .is_ok_and(|d| d.as_secs() < 1),
            _ => false,
        };
        if !same {
            *cached = now;
        }
        *cached
    }

    pub fn status(&self) -> PeerStatus {
        let cfg = self.config();
        let since = self.tunn().time_since_last_handshake();
        PeerStatus {
            public_key: cfg.public_key,
            endpoint: self.endpoint(),
            allowed_ips: cfg.allowed_ips,
            last_handshake: self
                .stable_handshake_time(since.and_then(|d| SystemTime::now().checked_sub(d))),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            persistent_keepalive: Some(self.keepalive()).filter(|&k| k != 0),
        }
    }
}
