//! Service IPs as addresses on `proxy.interface` (rtnetlink).
//!
//! Each VIP is added as a /32 (IPv4) or /128 (IPv6) with **address protocol
//! [`ADDR_PROTO`] (`IFA_PROTO` = 0x63, shown by `ip -d addr` as `proto 0x63`)**: that
//! mark is how we recognise our addresses; any address without it is never touched, even
//! when it equals a VIP. IPv4 aliases also get the label `<iface>:cw` when it fits in 15
//! bytes (for people; `ip addr` prints it), scope `host` (never chosen as a source
//! address), and `IFA_F_NODAD | IFA_F_NOPREFIXROUTE` (usable at once, no route added).

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt, stream};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, AddressScope,
};
use rtnetlink::Handle;

/// `IFA_PROTO` value of the addresses we own ('c').
pub const ADDR_PROTO: u8 = 0x63;

/// Why aliases could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    /// The rtnetlink socket could not be opened.
    #[error("cannot open an rtnetlink socket")]
    Connect(#[source] std::io::Error),
    /// The interface does not exist.
    #[error("interface {0:?} not found")]
    NoInterface(String),
    /// A netlink request failed.
    #[error("{op} on {interface}")]
    Netlink {
        op: String,
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// The VIP aliases of one interface.
pub struct Aliases {
    handle: Handle,
    interface: String,
}

/// What a sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AliasChanges {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
}

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
    let mut addr = None;
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

fn is_ours(msg: &AddressMessage) -> bool {
    msg.attributes
        .iter()
        .any(|a| matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == ADDR_PROTO))
}

impl Aliases {
    /// Opens an rtnetlink connection (its task runs on the current tokio runtime).
    pub fn new(interface: impl Into<String>) -> Result<Self, AliasError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(AliasError::Connect)?;
        tokio::spawn(conn);
        Ok(Aliases {
            handle,
            interface: interface.into(),
        })
    }

    fn nl(&self, op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> AliasError + '_ {
        let op = op.into();
        move |source| AliasError::Netlink {
            op,
            interface: self.interface.clone(),
            source,
        }
    }

    async fn index(&self) -> Result<u32, AliasError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(self.interface.clone())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(AliasError::NoInterface(self.interface.clone())),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {
                Err(AliasError::NoInterface(self.interface.clone()))
            }
            Err(e) => Err(self.nl("get link")(e)),
        }
    }

    async fn addresses(&self, index: u32) -> Result<Vec<AddressMessage>, AliasError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(self.nl("list addresses"))
    }

    /// Our addresses on the interface now.
    pub async fn list(&self) -> Result<BTreeSet<IpAddr>, AliasError> {
        let index = self.index().await?;
        Ok(self
            .addresses(index)
            .await?
            .iter()
            .filter(|m| is_ours(m))
            .filter_map(address_of)
            .collect())
    }

    /// Makes our addresses on the interface exactly `vips` (addresses that are not ours
    /// are left alone, and a VIP someone else already has is not added again). Requests
    /// are pipelined ([`IN_FLIGHT`] at a time): one at a time, 10,000 VIPs took seconds.
    pub async fn sync(&self, vips: &BTreeSet<IpAddr>) -> Result<AliasChanges, AliasError> {
        let index = self.index().await?;
        let current = self.addresses(index).await?;
        let present: BTreeSet<IpAddr> = current.iter().filter_map(address_of).collect();
        let stale: Vec<(IpAddr, AddressMessage)> = current
            .into_iter()
            .filter(is_ours)
            .filter_map(|m| Some((address_of(&m)?, m)))
            .filter(|(ip, _)| !vips.contains(ip))
            .collect();
        let mut removed: Vec<IpAddr> = stream::iter(stale)
            .map(|(ip, msg)| async move {
                self.handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(self.nl(format!("delete {ip}")))
                    .map(|()| ip)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let label = format!("{}:cw", self.interface);
        // Owned addresses: the future stays `Send` for any caller (a spawned task).
        let missing: Vec<IpAddr> = vips
            .iter()
            .filter(|ip| !present.contains(*ip))
            .copied()
            .collect();
        let mut added: Vec<IpAddr> = stream::iter(missing)
            .map(|ip| {
                let prefix = if ip.is_ipv4() { 32 } else { 128 };
                let mut req = self.handle.address().add(index, ip, prefix);
                let msg = req.message_mut();
                msg.header.scope = AddressScope::Host;
                msg.attributes
                    .push(AddressAttribute::Protocol(AddressProtocol::from(
                        ADDR_PROTO,
                    )));
                msg.attributes.push(AddressAttribute::Flags(
                    AddressFlags::Nodad | AddressFlags::Noprefixroute,
                ));
                if ip.is_ipv4() && label.len() <= 15 {
                    msg.attributes.push(AddressAttribute::Label(label.clone()));
                }
                async move {
                    req.execute()
                        .await
                        .map_err(self.nl(format!("add {ip}")))
                        .map(|()| ip)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        removed.sort();
        added.sort();
        Ok(AliasChanges { added, removed })
    }
}

/// Address requests in flight at once.
const IN_FLIGHT: usize = 64;

/// `ENODEV`, which the kernel answers for a link name it does not know.
fn libc_enodev() -> i32 {
    19
}
