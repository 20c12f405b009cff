//! causeway-proxy: makes the Services of every remote cluster reachable at their
//! ClusterIPs from this network namespace, load-balanced to the remote pods.
//!
//! The layers, each importing only those below it:
//!
//! ```text
//! sync, debug, aliases, drain      the loop, its HTTP view, VIP addresses, graceful termination
//!   ↓
//! plan                             snapshot → DesiredState (pure: no I/O, no clock)
//!   ↓
//! backend                          DesiredState → kernel; KernelState ← kernel
//!   ↓
//! causeway-nfnl, causeway-ipvs     the kernel protocols (crates of their own: they cannot
//!                                  import the planner)
//! ```
//!
//! - [`plan`]: snapshot → desired virtual services and real servers ([`plan::backends`]
//!   holds the Kubernetes endpoint semantics, [`plan::Planner`] the memoized planner);
//! - [`names`]: deterministic, length-safe nftables names;
//! - [`backend`]: the kernel interface, with [`backend::nft`], [`backend::ipvs`], a fake,
//!   the state read back and its `ipvsadm -Ln` rendering ([`backend::ipvsadm`]);
//! - [`drain`]: graceful termination of removed real servers;
//! - [`aliases`]: VIPs as addresses on the interface;
//! - [`sync`]: the rate-limited sync loop and its metrics ([`metrics`]);
//! - [`debug`]: the `/ipvs` routes.

pub mod aliases;
pub mod backend;
pub mod debug;
pub mod drain;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod sync;
#[cfg(test)]
pub(crate) mod testdata;
