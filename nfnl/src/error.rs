//! Why talking to nf_tables failed.

use std::io;

/// Why talking to nf_tables failed.
#[derive(Debug, thiserror::Error)]
pub enum NfnlError {
    /// The socket could not be opened, sized or used.
    #[error("netfilter netlink socket: {op}")]
    Socket {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The network namespace could not be entered.
    #[error("cannot enter network namespace {netns}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
    /// The kernel refused message `index` of the batch (the whole batch was undone).
    #[error("message {index} refused: {source}")]
    Refused {
        index: usize,
        #[source]
        source: io::Error,
    },
    /// The kernel refused the batch without naming a message (e.g. at commit).
    #[error("transaction refused: {0}")]
    Batch(#[source] io::Error),
}
