//! The IPVS client's requests against the bytes `ipvsadm` sends, captured with strace
//! in the kernel VM (`data/netlink-fixtures.txt`: `strace -e trace=sendmsg -e write=all -xx
//! ipvsadm ...` inside `tests/lab/kernel-vm.sh`).
//!
//! Every IPVS message in the file must (1) decode and re-encode to the same bytes and
//! (2) be matched by what our request builders send for the same operation. ipvsadm
//! sends a full service/destination description even where the kernel reads only the
//! identity (NEW_DEST's service, DEL_*); we send the identity only, so for those the
//! comparison is against ipvsadm's message with the non-identity attributes removed.
//!
//! Bytes 8..16 (sequence and port number) vary per run and are copied from the
//! fixture; the IPVS family id is the fixture's `nlmsg_type` (assigned at module load).

use std::collections::BTreeMap;

use causeway_ipvs::message::{AF_INET, IpvsAttr, IpvsCmd, IpvsMessage, ServiceAttr, ServiceFlags};
use causeway_ipvs::{Forward, Protocol, RealServer, VirtualService, request};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::{
    GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};

const FIXTURES: &str = include_str!("data/netlink-fixtures.txt");
const NLCTRL: u16 = 0x10;

type Ipvs = NetlinkMessage<GenlMessage<IpvsMessage>>;

/// Sections by their `## title`, each a list of messages (hex decoded).
fn sections() -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out = BTreeMap::<String, Vec<Vec<u8>>>::new();
    let mut current = None;
    for line in FIXTURES.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            current = Some(title.to_owned());
            out.entry(title.to_owned()).or_default();
        } else if !line.is_empty() && !line.starts_with('#') {
            let title = current.clone().expect("hex before the first section");
            out.get_mut(&title).unwrap().push(hex(line));
        }
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex line {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ipvs_sections() -> Vec<(String, Vec<Vec<u8>>)> {
    let all: Vec<_> = sections()
        .into_iter()
        .filter(|(t, _)| t.starts_with("ipvsadm "))
        .collect();
    assert_eq!(
        all.len(),
        9,
        "the fixture file should hold 9 ipvsadm commands"
    );
    all
}

fn section(title: &str) -> Vec<Vec<u8>> {
    sections()
        .remove(title)
        .unwrap_or_else(|| panic!("no fixture section {title:?}"))
}

fn message_type(raw: &[u8]) -> u16 {
    u16::from_le_bytes([raw[4], raw[5]])
}

/// The IPVS family id of a section: the type of its non-nlctrl messages, which must
/// all agree.
fn family(msgs: &[Vec<u8>]) -> u16 {
    let mut ids: Vec<u16> = msgs
        .iter()
        .map(|m| message_type(m))
        .filter(|t| *t != NLCTRL)
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one IPVS family id per section: {ids:x?}");
    ids[0]
}

/// Encodes `msg` with the sequence and port numbers of `fixture`.
fn encode_like<I>(mut msg: NetlinkMessage<I>, fixture: &[u8]) -> Vec<u8>
where
    I: netlink_packet_core::NetlinkSerializable,
{
    msg.header.sequence_number = u32::from_le_bytes(fixture[8..12].try_into().unwrap());
    msg.header.port_number = u32::from_le_bytes(fixture[12..16].try_into().unwrap());
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn decode(raw: &[u8]) -> Ipvs {
    Ipvs::deserialize(raw).unwrap_or_else(|e| panic!("decode {}: {e}", hex_of(raw)))
}

fn payload(msg: &Ipvs) -> &IpvsMessage {
    match &msg.payload {
        NetlinkPayload::InnerMessage(genl) => &genl.payload,
        other => panic!("not an IPVS message: {other:?}"),
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_bytes(ours: &[u8], theirs: &[u8], what: &str) {
    assert_eq!(
        hex_of(ours),
        hex_of(theirs),
        "{what}: ours (left) vs ipvsadm (right)"
    );
}

/// ipvsadm's message with only the attributes the kernel reads for this command.
fn identity_only(raw: &[u8]) -> Vec<u8> {
    let mut msg = decode(raw);
    if let NetlinkPayload::InnerMessage(genl) = &mut msg.payload {
        for attr in &mut genl.payload.attrs {
            match attr {
                IpvsAttr::Service(s) => s.retain(ServiceAttr::is_identity),
                IpvsAttr::Dest(d) => d.retain(|a| a.is_identity()),
                _ => {}
            }
        }
    }
    encode_like(msg, raw)
}

/// The last message of a section: the command itself.
fn command(title: &str) -> (Vec<u8>, u16) {
    let msgs = section(title);
    (msgs.last().unwrap().clone(), family(&msgs))
}

fn tcp80() -> VirtualService {
    VirtualService::new(Protocol::Tcp, "10.0.0.1".parse().unwrap(), 80, "rr")
}

fn udp53() -> VirtualService {
    VirtualService::new(Protocol::Udp, "10.0.0.1".parse().unwrap(), 53, "wrr")
}

#[test]
fn every_ipvs_fixture_decodes_and_reencodes_identically() {
    let mut count = 0;
    for (title, msgs) in ipvs_sections() {
        for raw in &msgs {
            assert_eq!(
                u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize,
                raw.len(),
                "{title}"
            );
            let again = if message_type(raw) == NLCTRL {
                let msg = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(raw).unwrap();
                encode_like(msg, raw)
            } else {
                let msg = decode(raw);
                // ipvsadm always asks for an acknowledgement
                assert_ne!(msg.header.flags & NLM_F_ACK, 0, "{title}");
                encode_like(msg, raw)
            };
            assert_bytes(&again, raw, &title);
            count += 1;
        }
    }
    assert!(count >= 45, "only {count} messages");
}

#[test]
fn family_resolution_matches_ipvsadm() {
    for (title, msgs) in ipvs_sections() {
        for raw in msgs.iter().filter(|m| message_type(m) == NLCTRL) {
            let theirs = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(raw).unwrap();
            let NetlinkPayload::InnerMessage(genl) = &theirs.payload else {
                panic!("{title}")
            };
            assert_eq!(genl.payload.cmd, GenlCtrlCmd::GetFamily);
            assert_eq!(
                genl.payload.nlas,
                [GenlCtrlAttrs::FamilyName("IPVS".into())]
            );
            assert_bytes(&encode_like(request::get_family(), raw), raw, &title);
        }
    }
}

#[test]
fn get_info_matches_ipvsadm() {
    for (title, msgs) in ipvs_sections() {
        let fam = family(&msgs);
        let infos: Vec<_> = msgs
            .iter()
            .filter(|m| message_type(m) != NLCTRL && payload(&decode(m)).cmd == IpvsCmd::GetInfo)
            .collect();
        assert_eq!(infos.len(), 1, "{title}: ipvsadm asks GET_INFO once");
        assert_bytes(
            &encode_like(request::get_info(fam), infos[0]),
            infos[0],
            &title,
        );
    }
}

#[test]
fn new_service_matches_ipvsadm() {
    let (raw, fam) = command("ipvsadm -A -t 10.0.0.1:80 -s rr");
    assert_bytes(
        &encode_like(request::new_service(fam, &tcp80()), &raw),
        &raw,
        "-A -t",
    );
    let msg = decode(&raw);
    assert_eq!(payload(&msg).cmd, IpvsCmd::NewService);
    assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_ACK);

    let (raw, fam) = command("ipvsadm -A -u 10.0.0.1:53 -s wrr");
    assert_bytes(
        &encode_like(request::new_service(fam, &udp53()), &raw),
        &raw,
        "-A -u",
    );
}

#[test]
fn edit_service_matches_ipvsadm() {
    let (raw, fam) = command("ipvsadm -E -t 10.0.0.1:80 -s sh");
    let mut svc = tcp80();
    svc.scheduler = "sh".into();
    assert_bytes(
        &encode_like(request::set_service(fam, &svc), &raw),
        &raw,
        "-E",
    );
    assert_eq!(payload(&decode(&raw)).cmd, IpvsCmd::SetService);
}

#[test]
fn delete_service_matches_ipvsadm_identity() {
    let (raw, fam) = command("ipvsadm -D -t 10.0.0.1:80");
    assert_eq!(payload(&decode(&raw)).cmd, IpvsCmd::DelService);
    assert_bytes(
        &encode_like(request::del_service(fam, &tcp80()), &raw),
        &identity_only(&raw),
        "-D",
    );
}

#[test]
fn new_dest_matches_ipvsadm() {
    let (raw, fam) = command("ipvsadm -a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m");
    let rs = RealServer::new("10.0.0.2".parse().unwrap(), 8080, 1, Forward::Masq);
    let ours = encode_like(request::new_dest(fam, &tcp80(), &rs), &raw);
    assert_bytes(&ours, &identity_only_service(&raw), "-a -m");

    let (raw, fam) = command("ipvsadm -a -u 10.0.0.1:53 -r 10.0.0.3:5353 -g -w 3");
    // ipvsadm replaces the port of a non-NAT real server by the service's (the kernel
    // does not use it): 5353 went out as 53
    let rs = RealServer::new("10.0.0.3".parse().unwrap(), 53, 3, Forward::Route);
    let ours = encode_like(request::new_dest(fam, &udp53(), &rs), &raw);
    assert_bytes(&ours, &identity_only_service(&raw), "-a -g");
    // and the whole destination nest is ipvsadm's, byte for byte
    let theirs = decode(&raw);
    assert_eq!(payload(&theirs).cmd, IpvsCmd::NewDest);
    let ours = request::new_dest(fam, &udp53(), &rs);
    let NetlinkPayload::InnerMessage(genl) = &ours.payload else {
        unreachable!()
    };
    assert_eq!(genl.payload.dest(), payload(&theirs).dest());
}

/// NEW_DEST: ipvsadm's full service nest reduced to identity, destination kept whole.
fn identity_only_service(raw: &[u8]) -> Vec<u8> {
    let mut msg = decode(raw);
    if let NetlinkPayload::InnerMessage(genl) = &mut msg.payload {
        for attr in &mut genl.payload.attrs {
            if let IpvsAttr::Service(s) = attr {
                s.retain(ServiceAttr::is_identity);
            }
        }
    }
    encode_like(msg, raw)
}

#[test]
fn delete_dest_matches_ipvsadm_identity() {
    let (raw, fam) = command("ipvsadm -d -t 10.0.0.1:80 -r 10.0.0.2:8080");
    assert_eq!(payload(&decode(&raw)).cmd, IpvsCmd::DelDest);
    let rs = RealServer::new("10.0.0.2".parse().unwrap(), 8080, 1, Forward::Masq);
    let ours = encode_like(request::del_dest(fam, &tcp80(), &rs), &raw);
    assert_bytes(&ours, &identity_only(&raw), "-d");
}

#[test]
fn fwmark_service_encodes_like_ipvsadm() {
    // not modelled by VirtualService, but the message layer must express it
    let (raw, fam) = command("ipvsadm -A -f 7 -s rr");
    let msg = IpvsMessage {
        cmd: IpvsCmd::NewService,
        attrs: vec![IpvsAttr::Service(vec![
            ServiceAttr::AddressFamily(AF_INET),
            ServiceAttr::Fwmark(7),
            ServiceAttr::SchedName("rr".into()),
            ServiceAttr::Flags(ServiceFlags { flags: 0, mask: !0 }),
            ServiceAttr::Timeout(0),
            ServiceAttr::Netmask([0xff; 4]),
        ])],
    };
    assert_eq!(payload(&decode(&raw)), &msg);
    let mut genl = GenlMessage::from_payload(msg);
    genl.set_resolved_family_id(fam);
    let mut nl = NetlinkMessage::from(genl);
    nl.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    assert_bytes(&encode_like(nl, &raw), &raw, "-A -f");
}

#[test]
fn listing_dumps_match_ipvsadm() {
    let msgs = section("ipvsadm -Ln");
    let fam = family(&msgs);
    let ipvs: Vec<_> = msgs.iter().filter(|m| message_type(m) != NLCTRL).collect();
    // GET_INFO, GET_SERVICE dump, GET_DEST dump of UDP 10.0.0.1:53, GET_DEST of fwmark 7
    let cmds: Vec<_> = ipvs.iter().map(|m| payload(&decode(m)).cmd).collect();
    assert_eq!(
        cmds,
        [
            IpvsCmd::GetInfo,
            IpvsCmd::GetService,
            IpvsCmd::GetDest,
            IpvsCmd::GetDest
        ]
    );
    for raw in &ipvs[1..] {
        assert_eq!(
            decode(raw).header.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP
        );
    }
    assert_bytes(
        &encode_like(request::get_services(fam), ipvs[1]),
        ipvs[1],
        "GET_SERVICE dump",
    );
    assert_bytes(
        &encode_like(request::get_dests(fam, &udp53()), ipvs[2]),
        ipvs[2],
        "GET_DEST dump",
    );
    let fwm = decode(ipvs[3]);
    assert_eq!(
        payload(&fwm).service(),
        Some(&[ServiceAttr::AddressFamily(AF_INET), ServiceAttr::Fwmark(7)][..])
    );
}
