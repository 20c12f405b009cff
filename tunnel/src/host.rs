//! What the host's interfaces carry: addresses (for the route source) and the tunnel pod's
//! own IP and MAC (for steering). A narrow trait with an rtnetlink implementation and a
//! fixed one for tests.

use futures::TryStreamExt as _;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;

use std::net::IpAddr;

/// Errors of reading the host's interfaces.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A netlink dump failed.
    #[error("netlink dump of {0}")]
    Netlink(&'static str, #[source] rtnetlink::Error),
}

/// One interface of the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lower case.
    pub mac: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// The host's interfaces.
#[async_trait::async_trait]
pub trait Host: Send + Sync {
    async fn interfaces(&self) -> Result<Vec<HostInterface>, HostError>;
}

/// Fixed interfaces (tests).
#[derive(Clone, Debug, Default)]
pub struct StaticHost(pub Vec<HostInterface>);

#[async_trait::async_trait]
impl Host for StaticHost {
    async fn interfaces(&self) -> Result<Vec<HostInterface>, HostError> {
        Ok(self.0.clone())
    }
}

/// [`Host`] over rtnetlink (in the namespace the handle was created in).
#[derive(Clone)]
pub struct NetlinkHost(pub Handle);

#[async_trait::async_trait]
impl Host for NetlinkHost {
    async fn interfaces(&self) -> Result<Vec<HostInterface>, HostError> {
        let mut out: Vec<(u32, HostInterface)> = Vec::new();
        let mut links = self.0.link().get().execute();
        while let Some(l) = links
            .try_next()
            .await
            .map_err(|e| HostError::Netlink("links", e))?
        {
            let mut i = HostInterface::default();
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => i.name = n.clone(),
                    LinkAttribute::Address(mac) if mac.len() == 6 => {
                        i.mac = Some(
                            mac.iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<Vec<_>>()
                                .join(":"),
                        );
                    }
                    _ => {}
                }
            }
            out.push((l.header.index, i));
        }
        let mut addrs = self.0.address().get().execute();
        while let Some(a) = addrs
            .try_next()
            .await
            .map_err(|e| HostError::Netlink("addresses", e))?
        {
            let ip = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let ip = ip.or_else(|| {
                a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let (Some(ip), Some((_, i))) =
                (ip, out.iter_mut().find(|(idx, _)| *idx == a.header.index))
            {
                i.addresses.push(ip);
            }
        }
        Ok(out.into_iter().map(|(_, i)| i).collect())
    }
}
