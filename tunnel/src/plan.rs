//! Where the tunnel picks its peers: a pure function from what is known (this node, the
//! remote clusters' `TunnelEndpoint`s, static peers, configuration) to what the kernel should
//! have (WireGuard peers, routes, the MSS clamp, OVS steering flows).
//!
//! Rules, in the order they are applied:
//! - a remote node's allowed IPs are its pod subnets, kept only when they lie inside its
//!   cluster's configured `podCIDRs` (when any are configured) and overlap no other cluster's
//!   CIDRs and no peer planned before it; a remote cluster can never claim our addresses;
//! - a remote cluster's `serviceCIDRs` are carried by one of its peers (WireGuard needs
//!   disjoint allowed IPs): the first by node name that has an endpoint, unless the health
//!   check reports that peer down ([`PlanInput::peer_up`]); then the first by node name that
//!   it reports up; when none is up, the first with an endpoint all the same;
//! - a key seen twice (or our own key) is used once; later objects are reported;
//! - a cluster whose first list has not completed contributes the peers it already had on the
//!   device ([`RemoteView::Unsynced`]), so a restart never drops working peers;
//! - every remote pod and service CIDR is routed to the tunnel interface even without a peer,
//!   so traffic fails closed instead of leaving unencrypted by the default route.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use causeway_shared::config::StaticPeer;
use causeway_shared::model::TunnelEndpoint;
use ipnet::IpNet;

use crate::steering::flows::{self, Flow, SteeringPort};
use crate::wg::{PeerConfig, PublicKey};

/// This node, as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    /// Local cluster name.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Our own public key (never a peer of ourselves).
    pub public_key: PublicKey,
    /// The node's pod subnets (from its Node object), or the cluster's when unknown.
    pub pod_cidrs: Vec<IpNet>,
    /// Addresses present on this host; the route source is the one inside `pod_cidrs`.
    pub addresses: Vec<IpAddr>,
}

/// What is known of one remote cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCluster {
    /// Cluster name.
    pub name: String,
    /// Configured `podCIDRs` (empty: not configured).
    pub pod_cidrs: Vec<IpNet>,
    /// Configured `serviceCIDRs`.
    pub service_cidrs: Vec<IpNet>,
    /// Its tunnels, or what to keep until they are known.
    pub view: RemoteView,
}

/// A remote cluster's tunnels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteView {
    /// Its first full list completed: these are all its TunnelEndpoints.
    Synced(Vec<TunnelEndpoint>),
    /// Not listed yet: keep these peers as they are on the device.
    Unsynced(Vec<PeerConfig>),
}

/// Settings the plan needs from the `tunnel:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tunnel interface name.
    pub interface: String,
    /// Persistent keepalive in seconds (0: off).
    pub keepalive: u16,
}

/// Everything the plan is computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanInput {
    pub local: LocalNode,
    /// Remote clusters in configuration order.
    pub remotes: Vec<RemoteCluster>,
    /// Every configured CIDR of the local cluster (pods and services).
    pub local_cidrs: Vec<IpNet>,
    pub static_peers: Vec<StaticPeer>,
    pub settings: Settings,
    /// Endpoint host names already resolved (`host:port` text → address).
    pub resolved: BTreeMap<String, SocketAddr>,
    /// This pod's port on the OVS bridge, when steering is on.
    pub steering: Option<SteeringPort>,
    /// What the health check last said of the peers on the device: `true` up, `false` down
    /// (no handshake and nothing received within `peerDownAfter`). Peers it has not assessed
    /// yet are absent. Only used to move service CIDRs off a down peer.
    pub peer_up: BTreeMap<PublicKey, bool>,
}

/// Who a peer is, for logs, metrics and `/status`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerLabel {
    /// Remote cluster name, or `static` for a static peer.
    pub cluster: String,
    /// Remote node name, or `static-<index>`.
    pub node: String,
}

impl fmt::Display for PeerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.node)
    }
}

/// One planned peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedPeer {
    pub label: PeerLabel,
    pub config: PeerConfig,
    /// Where the peer answers path probes: its TunnelEndpoint's `probeEndpoint`, kept only
    /// inside its allowed IPs (a probe must go through the tunnel).
    pub probe: Option<SocketAddr>,
}

impl PlannedPeer {
    fn new(
        label: PeerLabel,
        public_key: PublicKey,
        endpoint: Option<SocketAddr>,
        allowed_ips: Vec<IpNet>,
        persistent_keepalive: Option<u16>,
    ) -> Self {
        PlannedPeer {
            label,
            config: PeerConfig {
                public_key,
                preshared_key: None,
                endpoint,
                allowed_ips,
                persistent_keepalive,
            },
            probe: None,
        }
    }
}

/// One route through the tunnel interface.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub destination: IpNet,
    pub interface: String,
    /// Preferred source address: this node's address in its pod subnet, so that replies come
    /// back through the tunnel (the remote peer only accepts our pod subnet).
    pub source: Option<IpAddr>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.destination, self.interface)?;
        if let Some(src) = self.source {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// The whole desired state of the node's tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub peers: Vec<PlannedPeer>,
    pub routes: Vec<Route>,
    /// Interface whose outgoing TCP SYNs get their MSS clamped to the route MTU.
    pub mss_interface: String,
    /// Steering flows (empty when steering is off).
    pub flows: Vec<Flow>,
    /// Objects or fields that were left out, with the reason.
    pub problems: Vec<String>,
    /// This node's address in its pod subnets (IPv4 first): the source of routes into the
    /// tunnel, and where our probe responder is published.
    pub probe_source: Option<IpAddr>,
}

impl Plan {
    /// The peer configs, for [`crate::wg::DeviceConfig`].
    pub fn peer_configs(&self) -> Vec<PeerConfig> {
        self.peers.iter().map(|p| p.config.clone()).collect()
    }

    /// Peer labels by public key.
    pub fn labels(&self) -> BTreeMap<PublicKey, PeerLabel> {
        self.peers
            .iter()
            .map(|p| (p.config.public_key, p.label.clone()))
            .collect()
    }

    /// Canonical text of the plan, for golden tests and TRACE logs.
    pub fn render(&self) -> String {
        let mut out = String::from("peers:\n");
        for p in &self.peers {
            let c = &p.config;
            let ips: Vec<String> = c.allowed_ips.iter().map(ToString::to_string).collect();
            let _ = write!(out, "  {} key={} endpoint=", p.label, c.public_key);
            match c.endpoint {
                Some(e) => {
                    let _ = write!(out, "{e}");
                }
                None => out.push('-'),
            }
            let _ = write!(
                out,
                " allowed={}",
                if ips.is_empty() {
                    "-".into()
                } else {
                    ips.join(",")
                }
            );
            if let Some(probe) = p.probe {
                let _ = write!(out, " probe={probe}");
            }
            match c.persistent_keepalive {
                Some(k) => {
                    let _ = writeln!(out, " keepalive={k}");
                }
                None => out.push('\n'),
            }
        }
        out.push_str("routes:\n");
        for r in &self.routes {
            let _ = writeln!(out, "  {r}");
        }
        let _ = writeln!(
            out,
            "mss:\n  oifname {} clamp to rt mtu",
            self.mss_interface
        );
        out.push_str("flows:\n");
        for f in &self.flows {
            let _ = writeln!(out, "  {f}");
        }
        if !self.problems.is_empty() {
            out.push_str("problems:\n");
            for p in &self.problems {
                let _ = writeln!(out, "  {p}");
            }
        }
        out
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Tracks which ranges are taken, so allowed IPs stay disjoint.
#[derive(Default)]
struct Taken(Vec<(IpNet, String)>);

impl Taken {
    fn owner(&self, net: &IpNet) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| overlaps(n, net))
            .map(|(_, o)| o.as_str())
    }
    fn take(&mut self, net: IpNet, owner: String) {
        self.0.push((net, owner));
    }
}

/// Computes the plan. Pure: the same input gives the same plan.
pub fn plan(input: &PlanInput) -> Plan {
    let mut problems = Vec::new();
    let mut peers: Vec<PlannedPeer> = Vec::new();
    let mut seen_keys: BTreeMap<PublicKey, PeerLabel> = BTreeMap::new();
    let mut taken = Taken::default();
    let keepalive = (input.settings.keepalive > 0).then_some(input.settings.keepalive);
    // Every CIDR that belongs to someone else than a given remote cluster, for the checks.
    let configured: Vec<(String, IpNet)> = input
        .local_cidrs
        .iter()
        .map(|n| (input.local.cluster.clone(), *n))
        .chain(
            input
                .local
                .pod_cidrs
                .iter()
                .map(|n| (input.local.cluster.clone(), *n)),
        )
        .chain(input.remotes.iter().flat_map(|r| {
            r.pod_cidrs
                .iter()
                .chain(&r.service_cidrs)
                .map(|n| (r.name.clone(), *n))
        }))
        .collect();
    seen_keys.insert(
        input.local.public_key,
        PeerLabel {
            cluster: input.local.cluster.clone(),
            node: input.local.node.clone(),
        },
    );

    let mut routes: BTreeSet<IpNet> = BTreeSet::new();
    for remote in &input.remotes {
        routes.extend(remote.pod_cidrs.iter().chain(&remote.service_cidrs));
        match &remote.view {
            RemoteView::Unsynced(kept) => {
                for p in kept {
                    if seen_keys.contains_key(&p.public_key) {
                        continue;
                    }
                    let label = PeerLabel {
                        cluster: remote.name.clone(),
                        node: "(unsynced)".into(),
                    };
                    seen_keys.insert(p.public_key, label.clone());
                    for net in &p.allowed_ips {
                        taken.take(*net, label.to_string());
                    }
                    peers.push(PlannedPeer {
                        label,
                        config: p.clone(),
                        probe: None,
                    });
                }
            }
            RemoteView::Synced(endpoints) => {
                let mut endpoints: Vec<&TunnelEndpoint> = endpoints.iter().collect();
                endpoints.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
                let mut cluster_peers: Vec<PlannedPeer> = Vec::new();
                for te in endpoints {
                    let label = PeerLabel {
                        cluster: remote.name.clone(),
                        node: te.node.clone(),
                    };
                    let what = format!(
                        "cluster {:?} TunnelEndpoint {}/{}",
                        remote.name, te.namespace, te.name
                    );
                    let key: PublicKey = match te.public_key.parse() {
                        Ok(k) => k,
                        Err(e) => {
                            problems.push(format!("{what}: publicKey: {e}"));
                            continue;
                        }
                    };
                    if let Some(first) = seen_keys.get(&key) {
                        problems.push(format!("{what}: publicKey is already the key of {first}"));
                        continue;
                    }
                    let mut allowed = Vec::new();
                    for net in &te.pod_cidrs {
                        let net = net.trunc();
                        if !remote.pod_cidrs.is_empty()
                            && !remote.pod_cidrs.iter().any(|c| c.contains(&net))
                        {
                            problems.push(format!(
                                "{what}: podCIDR {net} is outside the cluster's podCIDRs"
                            ));
                            continue;
                        }
                        if let Some((owner, _)) = configured
                            .iter()
                            .find(|(o, n)| *o != remote.name && overlaps(n, &net))
                        {
                            problems
                                .push(format!("{what}: podCIDR {net} overlaps cluster {owner:?}"));
                            continue;
                        }
                        if let Some(owner) = taken.owner(&net) {
                            problems.push(format!(
                                "{what}: podCIDR {net} is already routed to {owner}"
                            ));
                            continue;
                        }
                        taken.take(net, label.to_string());
                        if remote.pod_cidrs.is_empty() {
                            routes.insert(net);
                        }
                        allowed.push(net);
                    }
                    let endpoint = endpoint_of(
                        te.endpoint.as_deref(),
                        &input.resolved,
                        &format!("{what}: endpoint "),
                        &mut problems,
                    );
                    let probe = te.probe_endpoint.filter(|pe| {
                        let inside = allowed.iter().any(|n| n.contains(&pe.ip()));
                        if !inside {
                            problems.push(format!(
                                "{what}: probeEndpoint {pe} is outside its pod subnets; not probed"
                            ));
                        }
                        inside
                    });
                    seen_keys.insert(key, label.clone());
                    let mut peer = PlannedPeer::new(label, key, endpoint, allowed, keepalive);
                    peer.probe = probe;
                    cluster_peers.push(peer);
                }
                if let Some(i) = service_carrier(&cluster_peers, &input.peer_up) {
                    for net in &remote.service_cidrs {
                        if let Some(owner) = taken.owner(net) {
                            problems.push(format!(
                                "cluster {:?}: serviceCIDR {net} is already routed to {owner}",
                                remote.name
                            ));
                            continue;
                        }
                        taken.take(*net, cluster_peers[i].label.to_string());
                        cluster_peers[i].config.allowed_ips.push(*net);
                    }
                }
                peers.extend(cluster_peers);
            }
        }
    }

    for (index, sp) in input.static_peers.iter().enumerate() {
        let label = PeerLabel {
            cluster: "static".into(),
            node: format!("static-{index}"),
        };
        let what = format!("tunnel.staticPeers[{index}]");
        let key: PublicKey = match sp.public_key.parse() {
            Ok(k) => k,
            Err(e) => {
                problems.push(format!("{what}.publicKey: {e}"));
                continue;
            }
        };
        if let Some(first) = seen_keys.get(&key) {
            problems.push(format!("{what}.publicKey: already the key of {first}"));
            continue;
        }
        let mut allowed = Vec::new();
        for (i, raw) in sp.allowed_ips.iter().enumerate() {
            match raw.trim().parse::<IpNet>() {
                Ok(net) => {
                    let net = net.trunc();
                    if let Some((owner, _)) = configured.iter().find(|(_, n)| overlaps(n, &net)) {
                        problems.push(format!(
                            "{what}.allowedIPs[{i}]: {net} overlaps cluster {owner:?}"
                        ));
                    } else if let Some(owner) = taken.owner(&net) {
                        problems.push(format!(
                            "{what}.allowedIPs[{i}]: {net} is already routed to {owner}"
                        ));
                    } else {
                        taken.take(net, label.to_string());
                        routes.insert(net);
                        allowed.push(net);
                    }
                }
                Err(e) => problems.push(format!("{what}.allowedIPs[{i}]: {raw:?}: {e}")),
            }
        }
        let endpoint = endpoint_of(
            sp.endpoint.as_deref(),
            &input.resolved,
            &format!("{what}.endpoint: "),
            &mut problems,
        );
        seen_keys.insert(key, label.clone());
        peers.push(PlannedPeer::new(label, key, endpoint, allowed, keepalive));
    }

    let source_for = |dst: &IpNet| {
        input.local.addresses.iter().copied().find(|a| {
            a.is_ipv4() == dst.addr().is_ipv4()
                && input.local.pod_cidrs.iter().any(|c| c.contains(a))
        })
    };
    let probe_source = input
        .local
        .addresses
        .iter()
        .copied()
        .filter(|a| input.local.pod_cidrs.iter().any(|c| c.contains(a)))
        .min_by_key(IpAddr::is_ipv6);
    let routes = routes
        .into_iter()
        .map(|destination| Route {
            destination,
            interface: input.settings.interface.clone(),
            source: source_for(&destination),
        })
        .collect();

    // Steering covers every remote range: replies from a remote service come back with the
    // service IP as source (un-DNATed on the remote node), so sources and destinations match.
    let flows = match &input.steering {
        Some(port) => {
            let remote: Vec<IpNet> = input
                .remotes
                .iter()
                .flat_map(|r| r.pod_cidrs.iter().chain(&r.service_cidrs).copied())
                .chain(
                    peers
                        .iter()
                        .flat_map(|p| p.config.allowed_ips.iter().copied()),
                )
                .collect();
            flows::steering_flows(port, &remote)
        }
        None => Vec::new(),
    };

    Plan {
        peers,
        routes,
        mss_interface: input.settings.interface.clone(),
        flows,
        problems,
        probe_source,
    }
}

/// Which of a cluster's peers (sorted by node name) carries its service CIDRs: the first that
/// can be dialled (else the first), unless the health check reports it down; then the first
/// reported up. With none up (a fresh start, before any handshake) the first choice stays, so a
/// start does not move the ranges around; a peer not assessed yet never takes them over.
fn service_carrier(peers: &[PlannedPeer], peer_up: &BTreeMap<PublicKey, bool>) -> Option<usize> {
    let up = |p: &PlannedPeer| peer_up.get(&p.config.public_key).copied();
    let first = peers
        .iter()
        .position(|p| p.config.endpoint.is_some())
        .or((!peers.is_empty()).then_some(0))?;
    if up(&peers[first]) == Some(false) {
        peers
            .iter()
            .position(|p| up(p) == Some(true))
            .or(Some(first))
    } else {
        Some(first)
    }
}

/// An endpoint as written (`ip:port`), or a `host:port` the caller already resolved.
/// `raw` (IP:PORT, or a name the caller resolved into `resolved`) as an address; a name not
/// resolved yet is a problem, `{named}{raw:?} is not resolved yet`.
fn endpoint_of(
    raw: Option<&str>,
    resolved: &BTreeMap<String, SocketAddr>,
    named: &str,
    problems: &mut Vec<String>,
) -> Option<SocketAddr> {
    let raw = raw?;
    let addr = resolve_endpoint(raw, resolved);
    if addr.is_none() {
        problems.push(format!("{named}{raw:?} is not resolved yet"));
    }
    addr
}

fn resolve_endpoint(raw: &str, resolved: &BTreeMap<String, SocketAddr>) -> Option<SocketAddr> {
    raw.parse::<SocketAddr>()
        .ok()
        .or_else(|| resolved.get(raw).copied())
}
