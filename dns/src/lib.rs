//! causeway-dns: the `cluster.<name>` zones of every connected cluster, the merged
//! `cluster.all` zone, and forwarding of everything else.
//!
//! Data flows one way: catalog snapshot → [`records`] / [`merged`] (pure record building)
//! → [`zone_index`] (pre-encoded answers, swapped in by [`index_builder`]) → [`udp`] (fast
//! path) and [`handler`] (hickory-server: TCP and the rest) → [`forward`] for other names.

pub mod forward;
pub mod handler;
pub mod index_builder;
pub mod merged;
pub mod metrics;
pub mod names;
pub mod records;
pub mod server;
pub mod udp;
pub mod webhook;
pub mod wire;
pub mod zone_index;
