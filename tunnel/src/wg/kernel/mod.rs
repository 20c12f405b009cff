//! Kernel WireGuard: the link is created with rtnetlink (`LinkWireguard`) and configured over the
//! `wireguard` generic-netlink family. On start an existing link of the same name is adopted, and
//! every `configure` reads the kernel's peers and sends only the difference.

pub mod msg;

use futures::StreamExt as _;
use genetlink::GenetlinkHandle;
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::GenlMessage;
use netlink_packet_wireguard::WireguardMessage;
use tokio::sync::Mutex;

use super::link::{self, LinkError};
use super::{BackendKind, DeviceConfig, PeerConfig, PeerStatus, WgBackend, WgError, diff_peers};

/// Errors of the kernel backend.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Creating or raising the link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Opening the generic-netlink socket failed.
    #[error("open generic netlink socket")]
    Connect(#[source] std::io::Error),
    /// Sending a request failed (this includes ENOENT when the module is absent).
    #[error("{op} on {interface}")]
    Request {
        /// `get device` or `set device`.
        op: &'static str,
        /// The interface.
        interface: String,
        /// The genetlink error.
        #[source]
        source: genetlink::GenetlinkError,
    },
    /// The kernel answered with an error.
    #[error("{op} on {interface}: kernel answered")]
    Kernel {
        /// `get device` or `set device`.
        op: &'static str,
        /// The interface.
        interface: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// A reply could not be decoded.
    #[error("{op} on {interface}: bad reply")]
    Decode {
        /// `get device` or `set device`.
        op: &'static str,
        /// The interface.
        interface: String,
        /// The decode error.
        #[source]
        source: netlink_packet_core::DecodeError,
    },
}

/// The kernel implementation of [`WgBackend`].
pub struct KernelWg {
    interface: String,
    genl: Mutex<GenetlinkHandle>,
}

impl KernelWg {
    /// True when the `wireguard` generic-netlink family exists (the module is loaded or built in).
    /// On a kernel without it the family lookup fails with ENOENT.
    pub async fn available() -> bool {
        let Ok((conn, handle, _)) = genetlink::new_connection() else {
            return false;
        };
        let task = tokio::spawn(conn);
        let found = handle.resolve_family::<WireguardMessage>().await;
        task.abort();
        match found {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "wireguard generic-netlink family not found");
                false
            }
        }
    }

    /// Creates the `wireguard` link `interface` (or adopts an existing one), sets its MTU and
    /// brings it up.
    pub async fn create(interface: &str, mtu: u32) -> Result<Self, KernelError> {
        let rt = link::connect()?;
        let index = link::ensure_wireguard(&rt, interface).await?;
        link::up(&rt, index, interface, mtu).await?;
        let (conn, genl, _) = genetlink::new_connection().map_err(KernelError::Connect)?;
        tokio::spawn(conn);
        Ok(Self {
            interface: interface.to_owned(),
            genl: Mutex::new(genl),
        })
    }

    /// Deletes the link.
    pub async fn delete(self) -> Result<(), KernelError> {
        let rt = link::connect()?;
        if let Some(index) = link::index(&rt, &self.interface).await? {
            link::delete(&rt, index, &self.interface).await?;
        }
        Ok(())
    }

    async fn request(
        &self,
        op: &'static str,
        msg: WireguardMessage,
        flags: u16,
    ) -> Result<Vec<WireguardMessage>, KernelError> {
        let mut nl = NetlinkMessage::from(GenlMessage::from_payload(msg));
        nl.header.flags = flags;
        let mut genl = self.genl.lock().await;
        let mut replies = genl
            .request(nl)
            .await
            .map_err(|source| KernelError::Request {
                op,
                interface: self.interface.clone(),
                source,
            })?;
        let mut out = Vec::new();
        while let Some(reply) = replies.next().await {
            let reply = reply.map_err(|source| KernelError::Decode {
                op,
                interface: self.interface.clone(),
                source,
            })?;
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m.payload),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(KernelError::Kernel {
                        op,
                        interface: self.interface.clone(),
                        source: e.to_io(),
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn device(&self) -> Result<msg::DeviceState, KernelError> {
        let replies = self
            .request(
                "get device",
                msg::get_device(&self.interface),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .await?;
        Ok(msg::parse_device(&replies))
    }
}

#[async_trait::async_trait]
impl WgBackend for KernelWg {
    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }

    fn interface(&self) -> &str {
        &self.interface
    }

    async fn configure(&self, config: &DeviceConfig) -> Result<(), WgError> {
        let state = self.device().await?;
        // The kernel's view as PeerConfig, so the diff compares like with like. A learnt (roamed)
        // endpoint of a peer configured without one is not a difference.
        let current: Vec<PeerConfig> = state
            .peers
            .iter()
            .zip(&state.preshared)
            .map(|(p, (_, psk))| {
                let wanted = config.peers.iter().find(|w| w.public_key == p.public_key);
                let endpoint = match wanted {
                    Some(w) if w.endpoint.is_none() => None,
                    _ => p.endpoint,
                };
                PeerConfig {
                    public_key: p.public_key,
                    preshared_key: psk.clone(),
                    endpoint,
                    allowed_ips: p.allowed_ips.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                }
            })
            .collect();
        let diff = diff_peers(&current, &config.peers);
        tracing::debug!(
            interface = %self.interface,
            added = diff.added.len(),
            updated = diff.updated.len(),
            removed = diff.removed.len(),
            "configure kernel wireguard"
        );
        for m in msg::set_device(&self.interface, config, &diff) {
            self.request("set device", m, NLM_F_REQUEST | NLM_F_ACK)
                .await?;
        }
        Ok(())
    }

    async fn peers(&self) -> Result<Vec<PeerStatus>, WgError> {
        let mut peers = self.device().await?.peers;
        peers.sort_by_key(|p| p.public_key);
        Ok(peers)
    }
}
