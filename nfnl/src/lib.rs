//! causeway-nfnl: nf_tables over netlink, without the `nft` program.
//!
//! `nft -f` reads the table's chains back from the kernel before every transaction (a
//! dump that costs time growing with the square of the number of chains) and parses
//! and evaluates its input in user space; at 10,000 services that is most of a one-line
//! update's time. This crate writes the same messages `nft` would send, as one
//! nfnetlink batch (one transaction), reads back only the errors, and dumps tables,
//! chains, sets and rules. It knows nf_tables, not what the rules are for.
//!
//! - [`Batch`]: `BATCH_BEGIN`, numbered messages, `BATCH_END`; an error names the
//!   message by its number. Its methods add the objects of an `inet` table
//!   (`objects`) and, through [`Rule`], a rule's statements (`expr`);
//! - [`NfSocket`]: a `NETLINK_NETFILTER` socket, optionally opened inside a named
//!   network namespace: sends a batch, and lists objects back (`dump`);
//! - `msg` and `parse`: netlink message and attribute encoding and decoding.

mod batch;
mod data;
mod dump;
mod error;
mod expr;
mod msg;
mod objects;
mod parse;
mod socket;

pub use batch::{Batch, FinishedBatch};
pub use dump::ListedRule;
pub use error::NfnlError;
pub use expr::Rule;
pub use objects::{AddrProtoPort, BaseChain, Hook};
pub use socket::NfSocket;

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;

/// `NFPROTO_INET`: the family of `inet` tables (both IPv4 and IPv6).
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;
