//! The agent's key watcher, every `key_poll`: rotates the key file when `rotateInterval` is due,
//! and switches to the key the file holds when it changed (a rotation by this loop or by
//! `causeway-tunnel rotate`): the device is reconfigured (a sync) and the TunnelEndpoint
//! republished (the publisher follows `key_changed`).

use std::sync::Arc;

use super::state::{DisplayChain, Inner, now_unix};

impl Inner {
    /// Watches the key file, until the task is aborted (nothing without a key store).
    pub(super) async fn key_loop(&self) {
        let Some(store) = &self.keystore else { return };
        let interval = self.config.tunnel.rotate_interval.0;
        loop {
            tokio::time::sleep(self.timing.key_poll).await;
            // A file of a hundred bytes on the node's disk, read in place like the file
            // sources do; a due rotation writes it (two fsyncs) once per interval.
            let stored = match store.read() {
                Ok(Some(k)) => k,
                Ok(None) => {
                    tracing::warn!(
                        path = %store.path().display(),
                        "key file is gone; keeping the key in use (a restart generates a new one)"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %DisplayChain(&e), "cannot read the key file; keeping the key in use");
                    continue;
                }
            };
            let due = !interval.is_zero()
                && now_unix().saturating_sub(stored.created_unix) >= interval.as_secs();
            if due {
                if let Err(e) = store.rotate() {
                    tracing::warn!(error = %DisplayChain(&e), "scheduled key rotation failed");
                }
                continue;
            }
            if stored.key.public_key() != self.key.load().public_key() {
                tracing::info!(public_key = %stored.key.public_key(), "new key; reconfiguring and republishing");
                self.key.store(Arc::new(stored.key.clone()));
                self.metrics.rotations.inc();
                self.key_changed.send_replace(stored.key.public_key());
                self.mark_dirty();
            }
        }
    }
}
