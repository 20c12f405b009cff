//! Everything known about one cluster at one moment.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{EndpointSlice, Node, Service, ServiceKey, TunnelEndpoint};

/// The kinds of objects a source watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjectKind {
    Service,
    EndpointSlice,
    Node,
    TunnelEndpoint,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Service,
        ObjectKind::EndpointSlice,
        ObjectKind::Node,
        ObjectKind::TunnelEndpoint,
    ];

    /// Lower-case plural, as in the API path and in metric labels.
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Service => "services",
            ObjectKind::EndpointSlice => "endpointslices",
            ObjectKind::Node => "nodes",
            ObjectKind::TunnelEndpoint => "tunnelendpoints",
        }
    }
}

/// Objects of one cluster, indexed the way consumers read them.
///
/// Values are `Arc`s so that publishing a new snapshot copies pointers, not objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterData {
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
    /// EndpointSlices grouped by the service they belong to, then by slice name.
    endpoint_slices: BTreeMap<ServiceKey, BTreeMap<String, Arc<EndpointSlice>>>,
    /// Which service each slice (namespace, name) was filed under: a slice's
    /// `kubernetes.io/service-name` label can change, and a delete carries only the name.
    slice_owner: BTreeMap<(String, String), ServiceKey>,
    pub nodes: BTreeMap<String, Arc<Node>>,
    /// TunnelEndpoints by (namespace, name).
    pub tunnel_endpoints: BTreeMap<(String, String), Arc<TunnelEndpoint>>,
}

impl ClusterData {
    pub fn upsert_service(&mut self, svc: impl Into<Arc<Service>>) {
        let svc = svc.into();
        self.services.insert(svc.key.clone(), svc);
    }

    pub fn remove_service(&mut self, key: &ServiceKey) -> bool {
        self.services.remove(key).is_some()
    }

    pub fn upsert_slice(&mut self, slice: impl Into<Arc<EndpointSlice>>) {
        let slice = slice.into();
        let id = (slice.namespace.clone(), slice.name.clone());
        let key = slice.service_key();
        if let Some(old) = self
            .slice_owner
            .get(&id)
            .filter(|old| **old != key)
            .cloned()
        {
            self.detach_slice(&old, &id.1);
        }
        self.slice_owner.insert(id, key.clone());
        self.endpoint_slices
            .entry(key)
            .or_default()
            .insert(slice.name.clone(), slice);
    }

    pub fn remove_slice(&mut self, namespace: &str, name: &str) -> bool {
        let id = (namespace.to_string(), name.to_string());
        match self.slice_owner.remove(&id) {
            Some(owner) => {
                self.detach_slice(&owner, name);
                true
            }
            None => false,
        }
    }

    fn detach_slice(&mut self, owner: &ServiceKey, name: &str) {
        if let Some(slices) = self.endpoint_slices.get_mut(owner) {
            slices.remove(name);
            if slices.is_empty() {
                self.endpoint_slices.remove(owner);
            }
        }
    }

    pub fn upsert_node(&mut self, node: impl Into<Arc<Node>>) {
        let node = node.into();
        self.nodes.insert(node.name.clone(), node);
    }

    pub fn remove_node(&mut self, name: &str) -> bool {
        self.nodes.remove(name).is_some()
    }

    pub fn upsert_tunnel_endpoint(&mut self, te: impl Into<Arc<TunnelEndpoint>>) {
        let te = te.into();
        self.tunnel_endpoints
            .insert((te.namespace.clone(), te.name.clone()), te);
    }

    pub fn remove_tunnel_endpoint(&mut self, namespace: &str, name: &str) -> bool {
        self.tunnel_endpoints
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
    }

    /// Drops every object of one kind (before a relist refills it).
    pub fn clear_kind(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Service => self.services.clear(),
            ObjectKind::EndpointSlice => {
                self.endpoint_slices.clear();
                self.slice_owner.clear();
            }
            ObjectKind::Node => self.nodes.clear(),
            ObjectKind::TunnelEndpoint => self.tunnel_endpoints.clear(),
        }
    }

    /// Takes every object of `kind` from `other`, replacing ours (a finished relist).
    pub fn replace_kind(&mut self, kind: ObjectKind, other: &ClusterData) {
        match kind {
            ObjectKind::Service => self.services = other.services.clone(),
            ObjectKind::EndpointSlice => {
                self.endpoint_slices = other.endpoint_slices.clone();
                self.slice_owner = other.slice_owner.clone();
            }
            ObjectKind::Node => self.nodes = other.nodes.clone(),
            ObjectKind::TunnelEndpoint => self.tunnel_endpoints = other.tunnel_endpoints.clone(),
        }
    }

    /// The slices of one service (its endpoints are their union).
    pub fn slices_of(&self, key: &ServiceKey) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        self.endpoint_slices
            .get(key)
            .into_iter()
            .flat_map(|slices| slices.values())
    }

    /// Every service that has at least one slice, with its slices.
    pub fn slices_by_service(
        &self,
    ) -> impl Iterator<Item = (&ServiceKey, &BTreeMap<String, Arc<EndpointSlice>>)> {
        self.endpoint_slices.iter()
    }

    /// Number of objects of one kind.
    pub fn count(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Service => self.services.len(),
            ObjectKind::EndpointSlice => self.slice_owner.len(),
            ObjectKind::Node => self.nodes.len(),
            ObjectKind::TunnelEndpoint => self.tunnel_endpoints.len(),
        }
    }
}
