//! [`IpvsClient`]: a blocking generic-netlink socket speaking IPVS.

use std::fmt::Debug;
use std::io;
use std::time::Duration;

use netlink_packet_core::{NetlinkDeserializable, NetlinkMessage, NetlinkSerializable};
use netlink_packet_generic::{GenlMessage, ctrl::nlas::GenlCtrlAttrs};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::convert::Decoded;
use super::error::{Error, Request};
use super::message::{IpvsAttr, family_of};
use super::model::{Info, RealServer, ServiceEntry, VirtualService};
use super::reply::{Exchange, ReplyError};
use super::request;

/// How long to wait for the kernel's next datagram before giving up. The kernel
/// answers at once; this only turns a lost reply into an error instead of a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the kernel's IPVS over generic netlink.
///
/// Calls block (use `tokio::task::spawn_blocking`) and take `&mut self`: one request
/// is in flight at a time, so replies cannot interleave. Every change is acknowledged
/// by the kernel before its call returns.
#[derive(Debug)]
pub struct IpvsClient {
    socket: Socket,
    family: u16,
    seq: u32,
}

impl IpvsClient {
    /// Opens a socket and resolves the `IPVS` generic-netlink family.
    ///
    /// Returns [`Error::NotAvailable`] when the kernel has no IPVS (module `ip_vs`
    /// neither built in nor loaded).
    pub fn new() -> Result<Self, Error> {
        let socket_err = |op| move |source| Error::Socket { op, source };
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(socket_err("open"))?;
        socket.bind_auto().map_err(socket_err("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(socket_err("connect"))?;
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(socket_err("set timeout"))?;
        let mut client = Self {
            socket,
            family: 0,
            seq: 0,
        };
        client.family = client.resolve_family()?;
        Ok(client)
    }

    /// The generic-netlink family id the kernel assigned to IPVS.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    fn resolve_family(&mut self) -> Result<u16, Error> {
        let req = Request::ResolveFamily;
        let replies = self.exchange(request::get_family(), req)?;
        replies
            .iter()
            .flat_map(|m| &m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| bad_reply(req, "no CTRL_ATTR_FAMILY_ID"))
    }

    /// IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info, Error> {
        let req = Request::Info;
        let replies = self.exchange(request::get_info(self.family), req)?;
        let (mut version, mut size) = (None, None);
        for attr in replies.iter().flat_map(|m| &m.payload.attrs) {
            match attr {
                IpvsAttr::InfoVersion(v) => version = Some(*v),
                IpvsAttr::InfoConnTabSize(v) => size = Some(*v),
                _ => {}
            }
        }
        Ok(Info {
            version: version.ok_or_else(|| bad_reply(req, "no IPVS_INFO_ATTR_VERSION"))?,
            conn_table_size: size
                .ok_or_else(|| bad_reply(req, "no IPVS_INFO_ATTR_CONN_TAB_SIZE"))?,
        })
    }

    /// Every protocol virtual service with its real servers (one GET_SERVICE dump,
    /// then one GET_DEST dump per service). Firewall-mark services are skipped.
    ///
    /// A service deleted by someone else between the two dumps is listed without
    /// real servers (the kernel answers GET_DEST for a missing service with an empty
    /// dump).
    pub fn list_services(&mut self) -> Result<Vec<ServiceEntry>, Error> {
        let req = Request::ListServices;
        let replies = self.exchange(request::get_services(self.family), req)?;
        let mut entries = Vec::with_capacity(replies.len());
        for msg in &replies {
            let attrs = msg
                .payload
                .service()
                .ok_or_else(|| bad_reply(req, "no IPVS_CMD_ATTR_SERVICE"))?;
            match VirtualService::decode(attrs).map_err(|m| bad_reply(req, &m.0))? {
                Decoded::Service(service, stats) => entries.push(ServiceEntry {
                    service,
                    stats,
                    dests: vec![],
                }),
                Decoded::Fwmark(mark) => {
                    tracing::debug!(fwmark = mark, "skipping firewall-mark IPVS service")
                }
            }
        }
        for entry in &mut entries {
            entry.dests = self.list_dests(&entry.service)?;
        }
        Ok(entries)
    }

    /// The real servers of `svc` (empty if `svc` does not exist).
    pub fn list_dests(&mut self, svc: &VirtualService) -> Result<Vec<RealServer>, Error> {
        let req = Request::ListDests(svc);
        let replies = self.exchange(request::get_dests(self.family, svc), req)?;
        replies
            .iter()
            .map(|msg| {
                let attrs = msg
                    .payload
                    .dest()
                    .ok_or_else(|| bad_reply(req, "no IPVS_CMD_ATTR_DEST"))?;
                RealServer::decode(attrs, family_of(svc.addr)).map_err(|m| bad_reply(req, &m.0))
            })
            .collect()
    }

    /// Adds `svc` (without real servers).
    pub fn add_service(&mut self, svc: &VirtualService) -> Result<(), Error> {
        self.change(
            request::new_service(self.family, svc),
            Request::AddService(svc),
        )
    }

    /// Changes the scheduler, persistence or netmask of the existing service with
    /// `svc`'s protocol, address and port. Its real servers and connections stay.
    pub fn edit_service(&mut self, svc: &VirtualService) -> Result<(), Error> {
        self.change(
            request::set_service(self.family, svc),
            Request::EditService(svc),
        )
    }

    /// Deletes `svc` (matched by protocol, address and port) and its real servers.
    pub fn delete_service(&mut self, svc: &VirtualService) -> Result<(), Error> {
        self.change(
            request::del_service(self.family, svc),
            Request::DeleteService(svc),
        )
    }

    /// Adds real server `dest` to `svc`.
    pub fn add_dest(&mut self, svc: &VirtualService, dest: &RealServer) -> Result<(), Error> {
        self.change(
            request::new_dest(self.family, svc, dest),
            Request::AddDest(svc, dest),
        )
    }

    /// Changes the weight or forwarding method of real server `dest` (matched by
    /// address and port) of `svc`.
    pub fn edit_dest(&mut self, svc: &VirtualService, dest: &RealServer) -> Result<(), Error> {
        self.change(
            request::set_dest(self.family, svc, dest),
            Request::EditDest(svc, dest),
        )
    }

    /// Removes real server `dest` from `svc`. Its connections are dropped; set its
    /// weight to 0 first to drain them.
    pub fn delete_dest(&mut self, svc: &VirtualService, dest: &RealServer) -> Result<(), Error> {
        self.change(
            request::del_dest(self.family, svc, dest),
            Request::DeleteDest(svc, dest),
        )
    }

    /// Deletes every virtual service, including those Causeway did not create.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.change(request::flush(self.family), Request::Flush)
    }

    fn change(&mut self, msg: request::IpvsRequest, req: Request<'_>) -> Result<(), Error> {
        self.exchange(msg, req).map(drop)
    }

    /// Sends `msg` and collects its reply messages until the acknowledgement or the
    /// end of the dump.
    fn exchange<F>(
        &mut self,
        mut msg: NetlinkMessage<GenlMessage<F>>,
        req: Request<'_>,
    ) -> Result<Vec<GenlMessage<F>>, Error>
    where
        GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        tracing::trace!(request = %req, seq = self.seq, "ipvs netlink request");
        self.socket
            .send(&buf, 0)
            .map_err(|source| Error::Socket { op: "send", source })?;

        let mut exchange = Exchange::new(self.seq);
        loop {
            let datagram = match self.socket.recv_from_full() {
                Ok((datagram, _)) => datagram,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Socket { op: "recv", source }),
            };
            match exchange.absorb(&datagram) {
                Ok(true) => return Ok(exchange.into_replies()),
                Ok(false) => {}
                Err(ReplyError::Errno(errno)) => return Err(Error::from_errno(errno, req)),
                Err(ReplyError::Decode(source)) => {
                    return Err(Error::Decode {
                        request: req.to_string(),
                        source,
                    });
                }
                Err(ReplyError::Overrun) => return Err(bad_reply(req, "NLMSG_OVERRUN")),
            }
        }
    }
}

fn bad_reply(req: Request<'_>, reason: &str) -> Error {
    Error::BadReply {
        request: req.to_string(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whichever kernel this runs on, `new()` must agree with /proc: the ip_vs module
    /// creates /proc/net/ip_vs. On hosts without IPVS (this project's CI) this is the
    /// `NotAvailable` path the `auto` backend relies on; with IPVS, a client must come
    /// up and answer (or be refused for lack of CAP_NET_ADMIN).
    #[test]
    fn new_agrees_with_proc_about_ipvs() {
        let has_ipvs = std::path::Path::new("/proc/net/ip_vs").exists();
        match IpvsClient::new() {
            Err(Error::NotAvailable) => {
                assert!(!has_ipvs, "ip_vs is loaded but the family was not found")
            }
            Ok(mut client) => {
                assert!(
                    has_ipvs,
                    "IPVS family resolved but /proc/net/ip_vs is missing"
                );
                assert_ne!(client.family_id(), 0);
                match client.info() {
                    Ok(info) => assert!(info.version >= 0x010200, "{info}"),
                    Err(Error::PermissionDenied { .. }) => {}
                    Err(e) => panic!("info: {e:?}"),
                }
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
}
