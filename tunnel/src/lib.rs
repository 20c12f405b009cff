//! causeway-tunnel: a WireGuard mesh between the nodes of several clusters.
//!
//! The control plane follows the workspace's one shape: sources fill the catalog, [`plan`]
//! turns a snapshot into the desired peers, routes, MSS clamp and steering flows, and
//! [`agent`] applies them through narrow traits ([`wg::WgBackend`], [`routes::RouteTable`],
//! [`mss::Nft`], [`steering::Switch`], [`host::Host`]). [`keystore`] keeps the node's private
//! key on the node, [`publish`] the node's own objects in its cluster; [`health`] reports the
//! peers.

pub mod agent;
pub mod fakenft;
pub mod fakewg;
pub mod health;
pub mod host;
pub mod keystore;
pub mod mss;
pub mod names;
pub mod plan;
pub mod probe;
pub mod publish;
pub mod routes;
pub mod steering;
pub mod subnets;
pub mod wg;
