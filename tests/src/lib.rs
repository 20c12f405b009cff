//! causeway-tests: the test kit of Causeway.
//!
//! - [`apiserver`]: a test Kubernetes API server speaking the real protocol over TCP, with
//!   fault injection, for running `kube` clients and the binaries against fake clusters.
//! - [`wait`]: bounded polling for tests.

pub mod apiserver;
pub mod wait;
