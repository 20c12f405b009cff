//! Shared data-path health: the report the tunnel serves at `/paths` ([`report`]), read by
//! causeway-dns and causeway-proxy ([`watch`]) over plain HTTP ([`http`]) into the catalog's
//! per-cluster [`PathState`](crate::catalog::PathState).
//!
//! The tunnel knows whether packets get through; DNS and the proxy know only whether a
//! cluster's API answers. A cluster whose API answers but whose tunnel peers are all dead is
//! left out of merged answers by this path, within `pathHealth.unreachableAfter`.

pub mod http;
pub mod report;
pub mod watch;

pub use report::{ClusterPath, PathReport};
pub use watch::{PathMetrics, PathWatcher};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PathHealthError {
    /// The URL is not `http://host:port/path`.
    #[error("pathHealth.url: {0}")]
    Url(String),
    /// The report could not be fetched.
    #[error("{url}: {source}")]
    Fetch { url: String, source: std::io::Error },
    /// The server answered something else than 200.
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    /// The body is not a report.
    #[error("{url}: not a path report: {source}")]
    Decode {
        url: String,
        source: serde_json::Error,
    },
}
