//! causeway-proxy: makes the Services of every remote cluster reachable at their
//! ClusterIPs from this network namespace, load-balanced to the remote pods.
//!
//! `source → Snapshot → plan (pure) → DesiredState → Backend (kernel)`:
//! - [`plan`]: snapshot → desired virtual services and real servers;
//! - [`names`]: deterministic, length-safe nftables names;
//! - [`backend`]: the kernel interface, with [`backend::nft`], [`backend::ipvs`] and a fake;
//! - [`ipvs`]: the generic-netlink IPVS client;
//! - [`drain`]: graceful termination of removed real servers;
//! - [`aliases`]: VIPs as addresses on the interface;
//! - [`sync`]: the rate-limited sync loop and its metrics ([`metrics`]);
//! - [`debug`]: `/ipvs` in `ipvsadm -Ln` layout.

pub mod aliases;
pub mod backend;
pub mod debug;
pub mod drain;
pub mod ipvs;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod sync;
#[cfg(test)]
pub(crate) mod testdata;
