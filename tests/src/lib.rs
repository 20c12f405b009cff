//! causeway-tests: the test kit of Causeway.
//!
//! - [`apiserver`]: a test Kubernetes API server speaking the real protocol over TCP, with
//!   fault injection, for running `kube` clients and the binaries against fake clusters.
//! - [`cluster`]: test clusters (an API server, ranges, a kubeconfig) and the configuration
//!   file that names them.
//! - [`objects`]: the Kubernetes objects tests store (Nodes, TunnelEndpoints, Services, ...).
//! - [`daemon`]: a binary under test with its log, killed on drop, waited for with a bound.
//! - [`node_lab`]: node a1 of a two-cluster mesh in a namespace, for the node binaries.
//! - [`node_pair`]: nodes a1 and b1 of two clusters on one underlay, for tunnel-path tests.
//! - [`probe`]: GETs of the binaries' telemetry, their readiness states, free ports.
//! - [`netns`]: network namespaces, bridges, veth pairs, pods, echo servers, commands and
//!   children inside them, pings.
//! - [`wait`]: bounded polling for tests.
//! - [`rbac`]: least privilege, the request log against the rendered RBAC rules, both ways.
//! - [`scc`]: OpenShift's SecurityContextConstraints admission of the rendered pod templates.
//! - [`demo`]: running the demo scripts from end-to-end tests.
//! - [`fuzz`]: bounded, reproducible mutation fuzzing of input parsers.
//! - [`kernel_vm`]: running one test inside Debian's stock kernel under QEMU.
//! - [`manifests`]: the shipped manifests rendered by `kubectl kustomize`.

pub mod apiserver;
pub mod cluster;
pub mod daemon;
pub mod demo;
pub mod fuzz;
pub mod kernel_vm;
pub mod manifests;
pub mod netns;
pub mod node_lab;
pub mod node_pair;
pub mod objects;
pub mod probe;
pub mod rbac;
pub mod scc;
pub mod wait;
