//! The `pathHealth:` section: how causeway-dns and causeway-proxy learn whether each remote
//! cluster is reachable through the tunnel, and how soon an unreachable one is left out.

use serde::{Deserialize, Serialize};

use super::ConfigDuration;

/// Shared data-path health (read by causeway-dns and causeway-proxy).
///
/// The node's causeway-tunnel probes every remote node through the tunnel and serves, per
/// remote cluster, how long no probe has been answered (`/paths` on its `metricsListen`).
/// A cluster unreachable for longer than `unreachableAfter` leaves `cluster.all` (its own
/// `cluster.<name>` zone keeps answering) and comes back with the first answered probe.
/// When the report cannot be read, nothing is left out (the tunnel may be restarting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PathHealthConfig {
    /// Where the tunnel's report is read (`http://host:port/paths`); unset: the tunnel's
    /// `metricsListen` port on this host; empty: shared health is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A remote cluster none of whose nodes answered a probe for this long is unreachable.
    pub unreachable_after: ConfigDuration,
    /// How often the report is read.
    pub poll_interval: ConfigDuration,
}

impl Default for PathHealthConfig {
    fn default() -> Self {
        Self {
            url: None,
            unreachable_after: ConfigDuration::secs(5),
            poll_interval: ConfigDuration::secs(1),
        }
    }
}

/// `host:port` and path of an `http://` URL, or why it is not one.
pub fn split_http_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} does not start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(format!("{url:?} needs host:port after http://"));
    }
    Ok((authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_host_and_port() {
        assert_eq!(
            split_http_url("http://127.0.0.1:9155/paths"),
            Ok(("127.0.0.1:9155", "/paths"))
        );
        assert_eq!(split_http_url("http://[::1]:9155"), Ok(("[::1]:9155", "/")));
        for bad in ["https://a:1/", "http://host/paths", "http://:80/", "a:1"] {
            assert!(split_http_url(bad).is_err(), "{bad}");
        }
    }
}
