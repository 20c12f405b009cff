//! A rate-limited sync loop, after kube-proxy's BoundedFrequencyRunner.
//!
//! Change notifications only mark the state dirty; one task runs the sync function at
//! most once per `min_interval`, at least once per `full_resync_interval` (as a full
//! sync), and after a failure retries with exponential backoff, forcing a full sync.
//! Time comes from tokio, so tests drive it with a paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Timing of a [`SyncRunner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncTiming {
    pub min_interval: Duration,
    pub full_resync_interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for SyncTiming {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_millis(10),
            full_resync_interval: Duration::from_secs(300),
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// What one sync should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    /// Rebuild everything (first sync, periodic resync, after a failure) rather than
    /// only what changed.
    pub full: bool,
    /// The notification generation this sync covers.
    pub generation: u64,
}

/// Why the last sync ran, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncCause {
    Changed,
    Resync,
    Retry,
}

/// Runs a sync function under [`SyncTiming`].
pub struct SyncRunner {
    timing: SyncTiming,
}

impl SyncRunner {
    pub fn new(timing: SyncTiming) -> Self {
        Self { timing }
    }

    /// Loops until `changes` is closed. The first sync is full and runs at once.
    pub async fn run<F, Fut, E>(self, mut changes: watch::Receiver<u64>, mut sync: F)
    where
        F: FnMut(SyncRequest) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let t = &self.timing;
        let mut needs_full = true;
        let mut dirty = true;
        let mut last_start: Option<Instant> = None;
        let mut next_full = Instant::now() + t.full_resync_interval;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = t.retry_initial;
        let mut open = true;
        loop {
            // Wait for a reason to sync.
            let cause = loop {
                if dirty && retry_at.is_none() {
                    break SyncCause::Changed;
                }
                let deadline = retry_at.map_or(next_full, |r| r.min(next_full));
                tokio::select! {
                    changed = changes.changed(), if open => {
                        if changed.is_err() {
                            open = false;
                            if !dirty && retry_at.is_none() { return; }
                        } else {
                            dirty = true;
                        }
                    }
                    _ = sleep_until(deadline) => {
                        if retry_at.is_some_and(|r| r <= Instant::now()) {
                            retry_at = None;
                            break SyncCause::Retry;
                        }
                        needs_full = true;
                        break SyncCause::Resync;
                    }
                }
                if !open && !dirty && retry_at.is_none() {
                    return;
                }
            };
            if let Some(last) = last_start {
                sleep_until(last + t.min_interval).await;
            }
            // Everything notified up to here is covered by this sync.
            let generation = *changes.borrow_and_update();
            dirty = false;
            let request = SyncRequest {
                full: needs_full,
                generation,
            };
            last_start = Some(Instant::now());
            match sync(request).await {
                Ok(()) => {
                    if request.full {
                        next_full = Instant::now() + t.full_resync_interval;
                    }
                    needs_full = false;
                    backoff = t.retry_initial;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?cause, retry_in = ?backoff, "sync failed; a full sync follows");
                    needs_full = true;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(t.retry_max);
                }
            }
            if !open && retry_at.is_none() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<(u128, SyncRequest)>>>;

    fn recorder(
        log: Log,
        start: Instant,
        fail: Arc<Mutex<u32>>,
    ) -> impl FnMut(SyncRequest) -> std::future::Ready<Result<(), String>> {
        move |req| {
            log.lock().unwrap().push((start.elapsed().as_millis(), req));
            let mut f = fail.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                std::future::ready(Err("injected".to_string()))
            } else {
                std::future::ready(Ok(()))
            }
        }
    }

    fn timing() -> SyncTiming {
        SyncTiming {
            min_interval: Duration::from_millis(100),
            full_resync_interval: Duration::from_secs(10),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn coalesces_bursts_and_respects_min_interval() {
        let (tx, rx) = watch::channel(0u64);
        let log: Log = Arc::default();
        let start = Instant::now();
        let task = tokio::spawn(
            SyncRunner::new(timing()).run(rx, recorder(log.clone(), start, Arc::default())),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        for g in 1..=5 {
            tx.send_replace(g);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(tx);
        task.await.unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(
            log[0],
            (
                0,
                SyncRequest {
                    full: true,
                    generation: 0
                }
            )
        );
        assert_eq!(
            log[1],
            (
                100,
                SyncRequest {
                    full: false,
                    generation: 5
                }
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_full_resync() {
        let (tx, rx) = watch::channel(0u64);
        let log: Log = Arc::default();
        let start = Instant::now();
        let task = tokio::spawn(
            SyncRunner::new(timing()).run(rx, recorder(log.clone(), start, Arc::default())),
        );
        tokio::time::sleep(Duration::from_millis(25_000)).await;
        drop(tx);
        task.await.unwrap();
        let log = log.lock().unwrap();
        let times: Vec<_> = log.iter().map(|(t, r)| (*t, r.full)).collect();
        assert_eq!(times, [(0, true), (10_000, true), (20_000, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_retries_with_backoff_as_full_sync() {
        let (tx, rx) = watch::channel(0u64);
        let log: Log = Arc::default();
        let start = Instant::now();
        let fail = Arc::new(Mutex::new(0));
        let task = tokio::spawn(
            SyncRunner::new(timing()).run(rx, recorder(log.clone(), start, fail.clone())),
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        *fail.lock().unwrap() = 3;
        tx.send_replace(1);
        tokio::time::sleep(Duration::from_millis(5000)).await;
        drop(tx);
        task.await.unwrap();
        let log = log.lock().unwrap();
        let seen: Vec<_> = log.iter().map(|(t, r)| (*t, r.full)).collect();
        // 1000 partial fails; retries at +500 (full, fails), +1000 (full, fails), +2000 (full, ok).
        assert_eq!(
            seen,
            [
                (0, true),
                (1000, false),
                (1500, true),
                (2500, true),
                (4500, true)
            ]
        );
    }
}
