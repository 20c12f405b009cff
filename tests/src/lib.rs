//! causeway-tests: the test kit of Causeway.
//!
//! - [`apiserver`]: a test Kubernetes API server speaking the real protocol over TCP, with
//!   fault injection, for running `kube` clients and the binaries against fake clusters.
//! - [`netns`]: network namespaces, veth pairs, commands and children inside them, pings.
//! - [`wait`]: bounded polling for tests.
//! - [`rbac`]: least privilege, the request log against the rendered RBAC rules, both ways.
//! - [`scc`]: OpenShift's SecurityContextConstraints admission of the rendered pod templates.
//! - [`demo`]: running the demo scripts from end-to-end tests.
//! - [`kernel_vm`]: running one test inside Debian's stock kernel under QEMU.
//! - [`manifests`]: the shipped manifests rendered by `kubectl kustomize`.

pub mod apiserver;
pub mod demo;
pub mod kernel_vm;
pub mod manifests;
pub mod netns;
pub mod rbac;
pub mod scc;
pub mod wait;
