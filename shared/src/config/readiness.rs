//! The `readiness:` section, read by all three binaries.

use serde::{Deserialize, Serialize};

use super::ConfigDuration;

/// When a binary reports Ready (`/readyz`).
///
/// The local cluster must have synced; a remote counts once it has synced, once its last
/// good state has been loaded from the state directory, or once `remoteSyncTimeout` has
/// passed since the start, whichever comes first. A remote outage is shown in `/readyz`
/// and the metrics, but never keeps a binary unready after that wait.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ReadinessConfig {
    /// How long a start waits for a remote cluster's first full list.
    pub remote_sync_timeout: ConfigDuration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            remote_sync_timeout: ConfigDuration::secs(5),
        }
    }
}
