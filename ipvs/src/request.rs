//! Whole netlink requests, as [`IpvsClient`](super::IpvsClient) sends them. Public so
//! that tests can compare them with the bytes ipvsadm sends.
//!
//! Every request asks for an acknowledgement (`NLM_F_ACK`), as ipvsadm does, so a
//! change is known to have been applied when its call returns. Sequence and port
//! numbers are left 0; the client sets the sequence number.

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage};
use netlink_packet_generic::{
    GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};

use super::message::{IPVS_GENL_NAME, IpvsAttr, IpvsCmd, IpvsMessage};
use super::model::{RealServer, VirtualService};

/// An IPVS request.
pub type IpvsRequest = NetlinkMessage<GenlMessage<IpvsMessage>>;

/// `CTRL_CMD_GETFAMILY` for the `IPVS` family.
pub fn get_family() -> NetlinkMessage<GenlMessage<GenlCtrl>> {
    let mut genl = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_owned())],
    });
    // libnl (ipvsadm) sends version 1 where netlink-packet-generic says 2; the kernel
    // ignores it. 1 keeps our bytes identical to ipvsadm's.
    genl.header.version = 1;
    let mut msg = NetlinkMessage::from(genl);
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.finalize();
    msg
}

fn ipvs(family: u16, cmd: IpvsCmd, attrs: Vec<IpvsAttr>, dump: bool) -> IpvsRequest {
    let mut genl = GenlMessage::from_payload(IpvsMessage { cmd, attrs });
    genl.set_resolved_family_id(family);
    let mut msg = NetlinkMessage::from(genl);
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
    msg.finalize();
    msg
}

/// `IPVS_CMD_GET_INFO`.
pub fn get_info(family: u16) -> IpvsRequest {
    ipvs(family, IpvsCmd::GetInfo, vec![], false)
}

/// `IPVS_CMD_GET_SERVICE` dump: every service.
pub fn get_services(family: u16) -> IpvsRequest {
    ipvs(family, IpvsCmd::GetService, vec![], true)
}

/// `IPVS_CMD_GET_DEST` dump: the destinations of `svc`.
pub fn get_dests(family: u16, svc: &VirtualService) -> IpvsRequest {
    ipvs(
        family,
        IpvsCmd::GetDest,
        vec![IpvsAttr::Service(svc.identity_attrs())],
        true,
    )
}

/// `IPVS_CMD_NEW_SERVICE`.
pub fn new_service(family: u16, svc: &VirtualService) -> IpvsRequest {
    ipvs(
        family,
        IpvsCmd::NewService,
        vec![IpvsAttr::Service(svc.full_attrs())],
        false,
    )
}

/// `IPVS_CMD_SET_SERVICE`: scheduler, persistence and netmask of an existing service.
pub fn set_service(family: u16, svc: &VirtualService) -> IpvsRequest {
    ipvs(
        family,
        IpvsCmd::SetService,
        vec![IpvsAttr::Service(svc.full_attrs())],
        false,
    )
}

/// `IPVS_CMD_DEL_SERVICE` (identity attributes only; the kernel reads no more).
pub fn del_service(family: u16, svc: &VirtualService) -> IpvsRequest {
    ipvs(
        family,
        IpvsCmd::DelService,
        vec![IpvsAttr::Service(svc.identity_attrs())],
        false,
    )
}

/// `IPVS_CMD_NEW_DEST`.
pub fn new_dest(family: u16, svc: &VirtualService, dest: &RealServer) -> IpvsRequest {
    let attrs = vec![
        IpvsAttr::Service(svc.identity_attrs()),
        IpvsAttr::Dest(dest.full_attrs()),
    ];
    ipvs(family, IpvsCmd::NewDest, attrs, false)
}

/// `IPVS_CMD_SET_DEST`: weight and forwarding method of an existing destination.
pub fn set_dest(family: u16, svc: &VirtualService, dest: &RealServer) -> IpvsRequest {
    let attrs = vec![
        IpvsAttr::Service(svc.identity_attrs()),
        IpvsAttr::Dest(dest.full_attrs()),
    ];
    ipvs(family, IpvsCmd::SetDest, attrs, false)
}

/// `IPVS_CMD_DEL_DEST` (identity attributes only).
pub fn del_dest(family: u16, svc: &VirtualService, dest: &RealServer) -> IpvsRequest {
    let attrs = vec![
        IpvsAttr::Service(svc.identity_attrs()),
        IpvsAttr::Dest(dest.identity_attrs()),
    ];
    ipvs(family, IpvsCmd::DelDest, attrs, false)
}

/// `IPVS_CMD_FLUSH`: delete every service (ours and anybody else's).
pub fn flush(family: u16) -> IpvsRequest {
    ipvs(family, IpvsCmd::Flush, vec![], false)
}
