//! The resource table: which kinds the test API server serves, and under which URL.
//!
//! Objects are stored as JSON, so serving another kind is one more line in [`DEFAULT_RESOURCES`]
//! (or one call to [`TestApiServer::register_resource`](super::TestApiServer::register_resource)).

/// One served resource, like a row of `kubectl api-resources`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    /// API version inside the group, such as `v1`.
    pub version: &'static str,
    /// Kind of one object, such as `Service`.
    pub kind: &'static str,
    /// Plural name used in URLs, such as `services`.
    pub plural: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl Resource {
    /// A resource of the core group (`/api/v1/...`).
    pub const fn core(kind: &'static str, plural: &'static str, namespaced: bool) -> Self {
        Self {
            group: "",
            version: "v1",
            kind,
            plural,
            namespaced,
        }
    }

    /// A resource of a named group (`/apis/{group}/{version}/...`).
    pub const fn grouped(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Self {
        Self {
            group,
            version,
            kind,
            plural,
            namespaced,
        }
    }

    /// The `apiVersion` field of its objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of its list responses, such as `ServiceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether this resource is the one named by an object's `apiVersion` and `kind`.
    pub fn matches_type(&self, api_version: &str, kind: &str) -> bool {
        self.kind == kind && self.api_version() == api_version
    }
}

/// The resources every test API server serves from the start.
pub const DEFAULT_RESOURCES: &[Resource] = &[
    Resource::core("Namespace", "namespaces", false),
    Resource::core("Node", "nodes", false),
    Resource::core("Service", "services", true),
    Resource::core("Endpoints", "endpoints", true),
    Resource::core("Secret", "secrets", true),
    Resource::core("ConfigMap", "configmaps", true),
    Resource::core("Pod", "pods", true),
    Resource::grouped(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    Resource::grouped("coordination.k8s.io", "v1", "Lease", "leases", true),
    Resource::grouped(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
    ),
    Resource::grouped(
        "causeway.io",
        "v1alpha1",
        "TunnelEndpoint",
        "tunnelendpoints",
        true,
    ),
];

/// OpenShift SDN's per-node subnet (`network.openshift.io/v1` HostSubnet), not served by default.
pub const HOST_SUBNETS: Resource = Resource::grouped(
    "network.openshift.io",
    "v1",
    "HostSubnet",
    "hostsubnets",
    false,
);

/// Cilium's per-node object (`cilium.io/v2` CiliumNode), not served by default.
pub const CILIUM_NODES: Resource =
    Resource::grouped("cilium.io", "v2", "CiliumNode", "ciliumnodes", false);

/// Calico's IPAM blocks of a node (`crd.projectcalico.org/v1` BlockAffinity), not served by
/// default.
pub const BLOCK_AFFINITIES: Resource = Resource::grouped(
    "crd.projectcalico.org",
    "v1",
    "BlockAffinity",
    "blockaffinities",
    false,
);

/// The kinds the CNIs keep node pod subnets in ([`HOST_SUBNETS`], [`CILIUM_NODES`],
/// [`BLOCK_AFFINITIES`]), for a cluster that serves them all.
pub const CNI_RESOURCES: &[Resource] = &[HOST_SUBNETS, CILIUM_NODES, BLOCK_AFFINITIES];
