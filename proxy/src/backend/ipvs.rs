//! The IPVS backend: the planner's desired state onto the kernel's IPVS through
//! [`causeway_ipvs::IpvsClient`].
//!
//! Without a previous state (start, periodic resync, after a failure) it lists what the
//! kernel has and applies the difference: nothing is flushed, so a restart adopts the
//! virtual services and connections that are there. With one, it diffs against it and
//! only sends the changes. Real servers are created in NAT (`Masq`) mode.
//!
//! Only virtual services we own are ever edited or deleted: those whose VIP lies in a
//! remote cluster's `serviceCIDRs` (the `owned` predicate), or that we created.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use causeway_shared::model::Protocol;

use super::{
    ApplyReport, Backend, BackendError, Counters, Header, KernelReal, KernelService, KernelState,
};
use crate::plan::{DesiredState, VirtualServer, VsKey};
use causeway_ipvs::{self as client, Forward, IpvsClient, RealServer, VirtualService};

/// Why the IPVS backend failed.
#[derive(Debug, thiserror::Error)]
pub enum IpvsBackendError {
    /// Opening the client or listing failed.
    #[error("ipvs: {0}")]
    Client(#[from] client::Error),
    /// One operation of a diff failed (those before it were applied).
    #[error("ipvs: {op}")]
    Op {
        op: String,
        #[source]
        source: client::Error,
    },
}

/// One IPVS change, printed in `ipvsadm` rule syntax (`ipvsadm -S` style).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpvsOp {
    AddService(VirtualService),
    EditService(VirtualService),
    DeleteService(VirtualService),
    AddDest(VirtualService, RealServer),
    EditDest(VirtualService, RealServer),
    DeleteDest(VirtualService, RealServer),
}

fn svc_flag(s: &VirtualService) -> String {
    let p = match s.proto {
        client::Protocol::Tcp => "-t",
        client::Protocol::Udp => "-u",
        client::Protocol::Sctp => "--sctp-service",
    };
    format!("{p} {}", SocketAddr::new(s.addr, s.port))
}

fn svc_opts(s: &VirtualService) -> String {
    let mut o = format!(" -s {}", s.scheduler);
    if let Some(t) = s.persistent {
        o.push_str(&format!(" -p {t}"));
    }
    o
}

impl fmt::Display for IpvsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpvsOp::AddService(s) => write!(f, "-A {}{}", svc_flag(s), svc_opts(s)),
            IpvsOp::EditService(s) => write!(f, "-E {}{}", svc_flag(s), svc_opts(s)),
            IpvsOp::DeleteService(s) => write!(f, "-D {}", svc_flag(s)),
            IpvsOp::AddDest(s, d) => write!(f, "-a {} -r {d} -m -w {}", svc_flag(s), d.weight),
            IpvsOp::EditDest(s, d) => write!(f, "-e {} -r {d} -m -w {}", svc_flag(s), d.weight),
            IpvsOp::DeleteDest(s, d) => write!(f, "-d {} -r {d}", svc_flag(s)),
        }
    }
}

fn to_client_proto(p: Protocol) -> client::Protocol {
    match p {
        Protocol::Tcp => client::Protocol::Tcp,
        Protocol::Udp => client::Protocol::Udp,
        Protocol::Sctp => client::Protocol::Sctp,
    }
}

fn from_client_proto(p: client::Protocol) -> Protocol {
    match p {
        client::Protocol::Tcp => Protocol::Tcp,
        client::Protocol::Udp => Protocol::Udp,
        client::Protocol::Sctp => Protocol::Sctp,
    }
}

/// The kernel object for a planned virtual service.
pub fn virtual_service(key: &VsKey, scheduler: &str, affinity: Option<u32>) -> VirtualService {
    let vs = VirtualService::new(
        to_client_proto(key.proto),
        key.addr.ip(),
        key.addr.port(),
        scheduler,
    );
    match affinity {
        Some(t) => vs.with_persistence(t),
        None => vs,
    }
}

fn dest(addr: SocketAddr, weight: u32) -> RealServer {
    RealServer::new(addr.ip(), addr.port(), weight, Forward::Masq)
}

/// The operations turning `current` into `desired`. Services in `current` but not in
/// `desired` are deleted only when `owned` says they are ours.
pub fn diff(
    current: &KernelState,
    desired: &DesiredState,
    owned: impl Fn(&VsKey) -> bool,
) -> Vec<IpvsOp> {
    let mut ops = Vec::new();
    for (key, want) in &desired.services {
        let vs = virtual_service(key, &want.scheduler, want.affinity);
        match current.services.get(key) {
            None => {
                ops.push(IpvsOp::AddService(vs.clone()));
                for (a, w) in &want.reals {
                    ops.push(IpvsOp::AddDest(vs.clone(), dest(*a, *w)));
                }
            }
            Some(have) => {
                if have.scheduler != want.scheduler || have.affinity != want.affinity {
                    ops.push(IpvsOp::EditService(vs.clone()));
                }
                for (a, r) in &have.reals {
                    if !want.reals.contains_key(a) {
                        ops.push(IpvsOp::DeleteDest(vs.clone(), dest(*a, r.weight)));
                    }
                }
                for (a, w) in &want.reals {
                    match have.reals.get(a) {
                        None => ops.push(IpvsOp::AddDest(vs.clone(), dest(*a, *w))),
                        Some(r) if r.weight != *w => {
                            ops.push(IpvsOp::EditDest(vs.clone(), dest(*a, *w)))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    for (key, have) in &current.services {
        if !desired.services.contains_key(key) && owned(key) {
            ops.push(IpvsOp::DeleteService(virtual_service(
                key,
                &have.scheduler,
                have.affinity,
            )));
        }
    }
    ops
}

/// The kernel state as IPVS lists it.
pub fn kernel_state(info: Option<client::Info>, entries: &[client::ServiceEntry]) -> KernelState {
    let header = info.map_or(
        Header {
            version: 0,
            size: 0,
        },
        |i| Header {
            version: i.version,
            size: i.conn_table_size,
        },
    );
    let services = entries
        .iter()
        .map(|e| {
            let key = VsKey {
                proto: from_client_proto(e.service.proto),
                addr: SocketAddr::new(e.service.addr, e.service.port),
            };
            let reals = e
                .dests
                .iter()
                .map(|d| {
                    let r = KernelReal {
                        weight: d.weight,
                        active_conns: d.stats.active_conns,
                        inactive_conns: d.stats.inactive_conns,
                        stats: counters(&d.stats.traffic),
                    };
                    (SocketAddr::new(d.addr, d.port), r)
                })
                .collect();
            let ks = KernelService {
                scheduler: e.service.scheduler.clone(),
                affinity: e.service.persistent,
                reals,
                stats: counters(&e.stats),
                origin: None,
            };
            (key, ks)
        })
        .collect();
    KernelState { header, services }
}

fn counters(s: &client::Stats) -> Counters {
    Counters {
        conns: s.conns,
        in_pkts: s.in_pkts,
        out_pkts: s.out_pkts,
        in_bytes: s.in_bytes,
        out_bytes: s.out_bytes,
    }
}

/// Decides whether a VIP is ours (in a remote cluster's service CIDRs).
pub type Ownership = Box<dyn Fn(IpAddr) -> bool + Send>;

/// The IPVS backend.
pub struct IpvsBackend {
    client: IpvsClient,
    owned: Ownership,
}

impl IpvsBackend {
    /// Opens the generic-netlink client; [`client::Error::NotAvailable`] without IPVS.
    pub fn new(owned: Ownership) -> Result<Self, IpvsBackendError> {
        Ok(IpvsBackend {
            client: IpvsClient::new()?,
            owned,
        })
    }

    fn run(&mut self, ops: &[IpvsOp]) -> Result<(), IpvsBackendError> {
        for op in ops {
            tracing::debug!(%op, "ipvs");
            let r = match op {
                IpvsOp::AddService(s) => self.client.add_service(s),
                IpvsOp::EditService(s) => self.client.edit_service(s),
                IpvsOp::DeleteService(s) => self.client.delete_service(s),
                IpvsOp::AddDest(s, d) => self.client.add_dest(s, d),
                IpvsOp::EditDest(s, d) => self.client.edit_dest(s, d),
                IpvsOp::DeleteDest(s, d) => self.client.delete_dest(s, d),
            };
            r.map_err(|source| IpvsBackendError::Op {
                op: op.to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

impl Backend for IpvsBackend {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn read(&mut self) -> Result<KernelState, BackendError> {
        let info = self.client.info().map_err(IpvsBackendError::from)?;
        let entries = self
            .client
            .list_services()
            .map_err(IpvsBackendError::from)?;
        Ok(kernel_state(Some(info), &entries))
    }

    fn apply(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, BackendError> {
        let current = match previous {
            Some(p) => KernelState::from_desired(
                p,
                Header {
                    version: 0,
                    size: 0,
                },
            ),
            None => {
                let entries = self
                    .client
                    .list_services()
                    .map_err(IpvsBackendError::from)?;
                kernel_state(None, &entries)
            }
        };
        let owned = &self.owned;
        let ops = diff(&current, desired, |k| {
            owned(k.addr.ip()) || previous.is_some_and(|p| p.services.contains_key(k))
        });
        self.run(&ops)?;
        Ok(ApplyReport {
            operations: ops.len(),
        })
    }

    fn connections(&mut self, vs: &VsKey, real: SocketAddr) -> Option<u32> {
        let svc = virtual_service(vs, "rr", None);
        let dests = self.client.list_dests(&svc).ok()?;
        dests
            .iter()
            .find(|d| d.addr == real.ip() && d.port == real.port())
            .map(|d| d.stats.active_conns + d.stats.inactive_conns)
    }
}

/// A planned virtual server as kernel objects (tests and the debug view).
pub fn kernel_objects(key: &VsKey, vs: &VirtualServer) -> (VirtualService, Vec<RealServer>) {
    let svc = virtual_service(key, &vs.scheduler, vs.affinity);
    let dests = vs.reals.iter().map(|(a, w)| dest(*a, *w)).collect();
    (svc, dests)
}

#[cfg(test)]
mod tests;
