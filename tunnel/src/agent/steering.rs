//! The agent's use of [`Steering`](crate::steering::Steering) (`steering: ovs`): the flows a
//! sync planned are installed, a periodic recheck reinstalls them when the switch lost or
//! altered them (an `ovs-vswitchd` restart), and a clean shutdown removes them. Each restore is
//! counted and logged the same way, whichever of the two noticed it.

use super::state::{DisplayChain, Inner};
use crate::steering::{Flow, Outcome, Steering, SteeringError};

impl Inner {
    /// Makes the bridge carry `flows` (nothing without steering).
    pub(super) async fn apply_steering(&self, flows: &[Flow]) -> Result<(), SteeringError> {
        let Some(s) = &self.steering else {
            return Ok(());
        };
        match s.apply(flows).await? {
            Outcome::Unchanged => {}
            // The switch lost our flows and this sync came before the recheck.
            Outcome::Restored => self.restored(s),
            Outcome::Installed => tracing::info!(
                bridge = s.bridge(),
                flows = flows.len(),
                "steering flows installed"
            ),
        }
        Ok(())
    }

    /// Rechecks the flows every `steering_recheck`, until the task is aborted.
    pub(super) async fn steering_loop(&self) {
        let Some(s) = &self.steering else { return };
        loop {
            tokio::time::sleep(self.timing.steering_recheck).await;
            match s.recheck().await {
                Ok(Outcome::Restored) => self.restored(s),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %DisplayChain(&e), "steering recheck failed"),
            }
        }
    }

    /// Removes our flows (clean shutdown; nothing without steering).
    pub(super) async fn remove_steering(&self) {
        if let Some(s) = &self.steering {
            match s.remove().await {
                Ok(()) => tracing::info!(bridge = s.bridge(), "steering flows removed"),
                Err(e) => tracing::warn!(error = %e, "could not remove steering flows"),
            }
        }
    }

    fn restored(&self, s: &Steering) {
        self.metrics.steering_restores.inc();
        tracing::warn!(
            bridge = s.bridge(),
            "steering flows were missing or altered; restored"
        );
    }
}
