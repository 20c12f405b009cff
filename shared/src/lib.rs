//! Common library of Causeway: configuration, the cluster model, the sources that fill
//! it (Kubernetes API or YAML files), the catalog snapshot consumers read, the sync
//! runner, and telemetry.

pub mod catalog;
pub mod config;
pub mod crd;
pub mod model;
pub mod process;
pub mod source;
pub mod sync_runner;
pub mod telemetry;
