//! Routes of remote ranges to the tunnel interface, behind a narrow trait: rtnetlink
//! ([`NetlinkRoutes`]) and a stateful fake ([`FakeRoutes`]).
//!
//! Our routes carry protocol [`PROTOCOL`] in the main table, which is how a restarted tunnel
//! finds the ones it owns: a sync dumps them, adds or replaces what differs and deletes the
//! rest, and never touches a route of another protocol (adopt, don't flush).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use futures::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::plan::Route;

/// `rtm_protocol` of our routes (`ip route show proto 147`); unassigned in `rt_protos`.
pub const PROTOCOL: u8 = 147;
const MAIN_TABLE: u32 = 254;

/// Errors of programming routes.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The interface of a route does not exist.
    #[error("interface {0} not found")]
    NoInterface(String),
    /// A netlink request failed.
    #[error("netlink {op} {what}")]
    Netlink {
        /// `add`, `del`, `dump`, `link`.
        op: &'static str,
        /// The route or object concerned.
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A route could not be expressed as a netlink message.
    #[error("route {0}: invalid")]
    Invalid(String),
}

/// The kernel's routing table, as far as our routes go.
#[async_trait::async_trait]
pub trait RouteTable: Send + Sync {
    /// Makes our routes equal to `routes`.
    async fn sync(&self, routes: &[Route]) -> Result<(), RoutesError>;
    /// Our routes as they are now, sorted.
    async fn dump(&self) -> Result<Vec<Route>, RoutesError>;
}

/// [`RouteTable`] over rtnetlink. The handle's socket belongs to the network namespace it was
/// created in.
#[derive(Clone)]
pub struct NetlinkRoutes {
    handle: Handle,
}

impl NetlinkRoutes {
    /// Opens a connection in the current namespace and spawns its task.
    pub fn connect() -> std::io::Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Uses an existing handle (created in another namespace, say).
    pub fn from_handle(handle: Handle) -> Self {
        Self { handle }
    }

    async fn link_index(&self, name: &str) -> Result<u32, RoutesError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(RoutesError::NoInterface(name.into())),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                Err(RoutesError::NoInterface(name.into()))
            }
            Err(source) => Err(RoutesError::Netlink {
                op: "link",
                what: name.into(),
                source,
            }),
        }
    }

    async fn link_names(&self) -> Result<BTreeMap<u32, String>, RoutesError> {
        let mut out = BTreeMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|source| RoutesError::Netlink {
                op: "link",
                what: "dump".into(),
                source,
            })?
        {
            for attr in &link.attributes {
                if let rtnetlink::packet_route::link::LinkAttribute::IfName(n) = attr {
                    out.insert(link.header.index, n.clone());
                }
            }
        }
        Ok(out)
    }

    /// Our route messages, with the route they express.
    async fn ours(&self) -> Result<Vec<(Route, RouteMessage)>, RoutesError> {
        let names = self.link_names().await?;
        let mut out = Vec::new();
        for family in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut stream = self.handle.route().get(family).execute();
            while let Some(msg) =
                stream
                    .try_next()
                    .await
                    .map_err(|source| RoutesError::Netlink {
                        op: "dump",
                        what: "routes".into(),
                        source,
                    })?
            {
                if msg.header.protocol != RouteProtocol::Other(PROTOCOL) {
                    continue;
                }
                if let Some(route) = parse(&msg, &names) {
                    out.push((route, msg));
                }
            }
        }
        Ok(out)
    }
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn parse(msg: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<Route> {
    let mut dst = None;
    let mut oif = None;
    let mut src = None;
    let mut table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::PrefSource(a) => src = addr(a),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    if table != MAIN_TABLE {
        return None;
    }
    let dst = dst.unwrap_or(match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let destination = IpNet::new(dst, msg.header.destination_prefix_length).ok()?;
    let interface = names.get(&oif?).cloned().unwrap_or_default();
    Some(Route {
        destination,
        interface,
        source: src,
    })
}

fn message(route: &Route, index: u32) -> Result<RouteMessage, RoutesError> {
    let invalid = |_| RoutesError::Invalid(route.to_string());
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.destination.addr(), route.destination.prefix_len())
        .map_err(invalid)?;
    if let Some(src) = route.source {
        b = b.pref_source(src).map_err(invalid)?;
    }
    Ok(b.output_interface(index)
        .protocol(RouteProtocol::Other(PROTOCOL))
        .scope(RouteScope::Link)
        .build())
}

#[async_trait::async_trait]
impl RouteTable for NetlinkRoutes {
    async fn sync(&self, routes: &[Route]) -> Result<(), RoutesError> {
        let existing = self.ours().await?;
        let mut indexes = BTreeMap::new();
        for r in routes {
            if !indexes.contains_key(&r.interface) {
                indexes.insert(r.interface.clone(), self.link_index(&r.interface).await?);
            }
        }
        for r in routes {
            if existing.iter().any(|(e, _)| e == r) {
                continue;
            }
            let msg = message(r, indexes[&r.interface])?;
            self.handle
                .route()
                .add(msg)
                .replace()
                .execute()
                .await
                .map_err(|source| RoutesError::Netlink {
                    op: "add",
                    what: r.to_string(),
                    source,
                })?;
            tracing::debug!(route = %r, "route set");
        }
        for (e, msg) in existing {
            // A replaced route keeps its destination; only destinations we no longer want go.
            if routes.iter().any(|r| r.destination == e.destination) {
                continue;
            }
            match self.handle.route().del(msg).execute().await {
                Ok(()) => tracing::debug!(route = %e, "route deleted"),
                // Gone already (its interface was deleted, say).
                Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ESRCH => {}
                Err(source) => {
                    return Err(RoutesError::Netlink {
                        op: "del",
                        what: e.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    async fn dump(&self) -> Result<Vec<Route>, RoutesError> {
        let mut routes: Vec<Route> = self.ours().await?.into_iter().map(|(r, _)| r).collect();
        routes.sort();
        Ok(routes)
    }
}

/// A [`RouteTable`] in memory.
#[derive(Debug, Default)]
pub struct FakeRoutes {
    routes: Mutex<Vec<Route>>,
    syncs: Mutex<usize>,
}

impl FakeRoutes {
    /// Canonical text, one route a line.
    pub fn dump_text(&self) -> String {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.iter().map(|r| format!("{r}\n")).collect()
    }

    /// How many syncs ran.
    pub fn syncs(&self) -> usize {
        *self.syncs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl RouteTable for FakeRoutes {
    async fn sync(&self, routes: &[Route]) -> Result<(), RoutesError> {
        let mut sorted = routes.to_vec();
        sorted.sort();
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = sorted;
        *self.syncs.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Ok(())
    }

    async fn dump(&self) -> Result<Vec<Route>, RoutesError> {
        Ok(self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
}
