//! Common library of Causeway: configuration, the cluster model, the sources that fill
//! it (Kubernetes API or YAML files), the catalog snapshot consumers read, the sync
//! runner, telemetry, the shutdown signal, and running external tools with a deadline.

pub mod catalog;
pub mod config;
pub mod crd;
pub mod model;
pub mod path_health;
pub mod process;
pub mod signal;
pub mod source;
pub mod supervise;
pub mod sync_runner;
pub mod telemetry;
pub mod tool;
