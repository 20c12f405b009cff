//! The IPVS client against a real kernel, checked against `ipvsadm -Ln` in the same
//! kernel.
//!
//! This host's kernel (and CI's) has no IPVS, so the one test here runs in two modes:
//!
//! - **on the host**: it runs itself inside Debian's stock kernel with
//!   [`causeway_tests::kernel_vm::run`] (QEMU, ~10 s under TCG here), which passes only
//!   if the guest run exits 0 *and* reports the nonce this run handed it.
//! - **in the VM** (`CAUSEWAY_KERNEL_VM=1`): it runs the scenarios below, in order,
//!   against the kernel's IPVS. Missing IPVS there is a failure, not a skip.
//!
//! Test addresses: RFC 5737 / RFC 3849 ranges.

use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use causeway_ipvs::{
    Error, Forward, IpvsClient, Protocol, RealServer, ServiceEntry, VirtualService,
};
use causeway_tests::kernel_vm;

const TEST_NAME: &str = "ipvs_client_against_a_real_kernel";

#[test]
fn ipvs_client_against_a_real_kernel() -> anyhow::Result<()> {
    kernel_vm::test(TEST_NAME, 300, || {
        in_vm::run_all();
        Ok(())
    })
}

mod in_vm {
    use super::*;

    pub fn run_all() {
        let scenarios: &[(&str, fn())] = &[
            ("info matches ipvsadm", info),
            ("create and list", create_and_list),
            ("edit weights, forwarding and scheduler", edit),
            ("errors name service and real server", errors),
            ("adopt after restart and services made by ipvsadm", adopt),
            ("delete", delete),
            ("multi-part dumps", large_dumps),
            ("flush", flush),
        ];
        assert!(
            std::path::Path::new("/proc/net/ip_vs").exists(),
            "CAUSEWAY_KERNEL_VM=1 but this kernel has no IPVS"
        );
        for (name, f) in scenarios {
            let t = Instant::now();
            println!("scenario {name} ...");
            f();
            println!("scenario {name}: ok ({} ms)", t.elapsed().as_millis());
        }
    }

    fn client() -> IpvsClient {
        IpvsClient::new().expect("IPVS client in the VM")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ipvsadm(args: &[&str]) -> String {
        let out = Command::new("ipvsadm")
            .args(args)
            .output()
            .expect("run ipvsadm");
        assert!(
            out.status.success(),
            "ipvsadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ipvsadm -Ln` without its header, each service followed by its real servers
    /// (sorted), whitespace normalized, connection counters dropped, services sorted.
    fn ipvsadm_listing() -> Vec<String> {
        let text = ipvsadm(&["-Ln"]);
        let mut services: Vec<(String, Vec<String>)> = vec![];
        for line in text.lines().skip(3) {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            match tokens.as_slice() {
                ["->", addr, fwd, weight, _active, _inactive] => {
                    services
                        .last_mut()
                        .expect("dest before service")
                        .1
                        .push(format!("-> {addr} {fwd} {weight}"));
                }
                [_proto, ..] => services.push((tokens.join(" "), vec![])),
                [] => {}
            }
        }
        canonical(services)
    }

    /// Our listing in the same form, rendered the way ipvsadm prints it.
    fn our_listing(entries: &[ServiceEntry]) -> Vec<String> {
        let services = entries
            .iter()
            .map(|e| {
                let dests = e
                    .dests
                    .iter()
                    .map(|d| format!("-> {} {} {}", d, d.fwd, d.weight))
                    .collect::<Vec<_>>();
                (service_line(&e.service), dests)
            })
            .collect();
        canonical(services)
    }

    fn service_line(s: &VirtualService) -> String {
        let mut line = format!(
            "{} {} {}",
            s.proto,
            std::net::SocketAddr::new(s.addr, s.port),
            s.scheduler
        );
        if let Some(timeout) = s.persistent {
            line += &format!(" persistent {timeout}");
            match s.addr {
                IpAddr::V4(_) if s.netmask != 32 => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(s.netmask)).unwrap_or(0);
                    line += &format!(" mask {}", std::net::Ipv4Addr::from(mask));
                }
                IpAddr::V6(_) if s.netmask != 128 => line += &format!(" mask {}", s.netmask),
                _ => {}
            }
        }
        line
    }

    fn canonical(mut services: Vec<(String, Vec<String>)>) -> Vec<String> {
        services.sort();
        services
            .into_iter()
            .flat_map(|(svc, mut dests)| {
                dests.sort();
                std::iter::once(svc).chain(dests)
            })
            .collect()
    }

    /// The kernel state seen by our client equals `expected` and ipvsadm's view.
    fn assert_state(c: &mut IpvsClient, expected: &[(VirtualService, Vec<RealServer>)]) {
        let listed = c.list_services().expect("list_services");
        let mut got: Vec<_> = listed
            .iter()
            .map(|e| {
                let mut dests: Vec<_> = e
                    .dests
                    .iter()
                    .map(|d| RealServer::new(d.addr, d.port, d.weight, d.fwd))
                    .collect();
                dests.sort_by_key(|d| (d.addr, d.port));
                (e.service.clone(), dests)
            })
            .collect();
        got.sort_by_key(|(s, _)| (s.proto, s.addr, s.port));
        let mut want: Vec<_> = expected
            .iter()
            .map(|(s, d)| {
                let mut d = d.clone();
                d.sort_by_key(|d| (d.addr, d.port));
                (s.clone(), d)
            })
            .collect();
        want.sort_by_key(|(s, _)| (s.proto, s.addr, s.port));
        assert_eq!(got, want, "our listing vs what we expect");
        assert_eq!(
            our_listing(&listed),
            ipvsadm_listing(),
            "our listing (left) vs ipvsadm -Ln (right)"
        );
    }

    fn tcp() -> VirtualService {
        VirtualService::new(Protocol::Tcp, ip("192.0.2.1"), 80, "rr")
    }
    fn udp() -> VirtualService {
        let mut s =
            VirtualService::new(Protocol::Udp, ip("192.0.2.1"), 53, "wrr").with_persistence(300);
        s.netmask = 24;
        s
    }
    fn sctp() -> VirtualService {
        VirtualService::new(Protocol::Sctp, ip("192.0.2.9"), 3868, "lc")
    }
    fn tcp6() -> VirtualService {
        VirtualService::new(Protocol::Tcp, ip("2001:db8::1"), 443, "sh").with_persistence(360)
    }
    fn rs(addr: &str, port: u16, weight: u32, fwd: Forward) -> RealServer {
        RealServer::new(ip(addr), port, weight, fwd)
    }

    /// The state after `create_and_list`.
    fn initial() -> Vec<(VirtualService, Vec<RealServer>)> {
        vec![
            (
                tcp(),
                vec![
                    rs("198.51.100.10", 8080, 1, Forward::Masq),
                    rs("198.51.100.11", 8080, 2, Forward::Masq),
                ],
            ),
            // a DR real server keeps the port we give it (ipvsadm would rewrite it)
            (
                udp(),
                vec![
                    rs("198.51.100.12", 53, 0, Forward::Route),
                    rs("198.51.100.13", 5353, 1, Forward::Masq),
                ],
            ),
            (sctp(), vec![rs("198.51.100.14", 3868, 1, Forward::Tunnel)]),
            (tcp6(), vec![rs("2001:db8::10", 8443, 1, Forward::Masq)]),
        ]
    }

    fn info() {
        let mut c = client();
        let info = c.info().expect("info");
        assert!(info.version >= 0x010200, "{info}");
        assert!(info.conn_table_size > 0);
        let first = ipvsadm(&["-Ln"]).lines().next().unwrap().to_owned();
        assert_eq!(info.to_string(), first);
    }

    fn create_and_list() {
        let mut c = client();
        c.flush().expect("flush");
        assert_state(&mut c, &[]);
        for (svc, dests) in initial() {
            c.add_service(&svc).unwrap_or_else(|e| panic!("{e}"));
            for d in &dests {
                c.add_dest(&svc, d).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        assert_state(&mut c, &initial());
        // the real servers of one service, and of one that does not exist
        let dests = c.list_dests(&tcp()).unwrap();
        assert_eq!(dests.len(), 2);
        assert!(
            dests
                .iter()
                .all(|d| d.stats.active_conns == 0 && d.stats.traffic.conns == 0)
        );
        let absent = VirtualService::new(Protocol::Tcp, ip("192.0.2.200"), 1, "rr");
        assert_eq!(c.list_dests(&absent).unwrap(), vec![]);
    }

    fn edit() {
        let mut c = client();
        let mut state = initial();
        // drain one real server (graceful termination) and weight another up
        let drained = rs("198.51.100.10", 8080, 0, Forward::Masq);
        c.edit_dest(&tcp(), &drained).unwrap();
        state[0].1[0] = drained;
        let heavier = rs("198.51.100.11", 8080, 7, Forward::Masq);
        c.edit_dest(&tcp(), &heavier).unwrap();
        state[0].1[1] = heavier;
        // forwarding method change
        let tunnelled = rs("198.51.100.13", 5353, 1, Forward::Tunnel);
        c.edit_dest(&udp(), &tunnelled).unwrap();
        state[1].1[1] = tunnelled;
        // scheduler and persistence change: real servers stay
        let mut svc = tcp();
        svc.scheduler = "mh".into();
        svc = svc.with_persistence(10_800);
        c.edit_service(&svc).unwrap();
        state[0].0 = svc;
        // and persistence off again on the IPv6 service
        let mut svc6 = tcp6();
        svc6.persistent = None;
        c.edit_service(&svc6).unwrap();
        state[3].0 = svc6;
        assert_state(&mut c, &state);
        // back to the initial state for the next scenarios
        c.flush().unwrap();
        for (svc, dests) in initial() {
            c.add_service(&svc).unwrap();
            for d in &dests {
                c.add_dest(&svc, d).unwrap();
            }
        }
        assert_state(&mut c, &initial());
    }

    fn errors() {
        let mut c = client();
        let absent = VirtualService::new(Protocol::Udp, ip("192.0.2.77"), 7, "rr");
        let d = rs("198.51.100.10", 8080, 1, Forward::Masq);
        let e = c.add_service(&tcp()).unwrap_err();
        assert!(matches!(e, Error::ServiceExists { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "virtual service TCP 192.0.2.1:80 already exists"
        );
        for e in [
            c.edit_service(&absent).unwrap_err(),
            c.delete_service(&absent).unwrap_err(),
            c.add_dest(&absent, &d).unwrap_err(),
            c.edit_dest(&absent, &d).unwrap_err(),
            c.delete_dest(&absent, &d).unwrap_err(),
        ] {
            assert!(matches!(e, Error::NoSuchService { .. }), "{e:?}");
            assert_eq!(
                e.to_string(),
                "virtual service UDP 192.0.2.77:7 does not exist"
            );
        }
        let e = c.add_dest(&tcp(), &d).unwrap_err();
        assert!(matches!(e, Error::DestExists { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "real server 198.51.100.10:8080 already exists in virtual service TCP 192.0.2.1:80"
        );
        let ghost = rs("198.51.100.99", 1, 1, Forward::Masq);
        for e in [
            c.edit_dest(&tcp(), &ghost).unwrap_err(),
            c.delete_dest(&tcp(), &ghost).unwrap_err(),
        ] {
            assert!(matches!(e, Error::NoSuchDest { .. }), "{e:?}");
            assert_eq!(
                e.to_string(),
                "real server 198.51.100.99:1 does not exist in virtual service TCP 192.0.2.1:80"
            );
        }
        let bad_sched = VirtualService::new(Protocol::Tcp, ip("192.0.2.78"), 80, "nosuch");
        let e = c.add_service(&bad_sched).unwrap_err();
        assert!(
            matches!(e, Error::UnknownScheduler { ref scheduler, .. } if scheduler == "nosuch"),
            "{e:?}"
        );
        let mut edit_bad = tcp();
        edit_bad.scheduler = "nosuch".into();
        assert!(matches!(
            c.edit_service(&edit_bad).unwrap_err(),
            Error::UnknownScheduler { .. }
        ));
        // the kernel keeps weights in an int: above i32::MAX is ERANGE
        let huge = rs("198.51.100.50", 80, u32::MAX, Forward::Masq);
        let e = c.add_dest(&tcp(), &huge).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        // an IPv6 service with an IPv4 NAT real server: EINVAL
        let e = c
            .add_dest(&tcp6(), &rs("198.51.100.51", 80, 1, Forward::Masq))
            .unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        // nothing changed, and the socket still works after the failures
        assert_state(&mut c, &initial());
    }

    fn adopt() {
        // a restart: a new client (new socket, new family lookup) sees the same
        drop(client());
        let mut c = client();
        assert_state(&mut c, &initial());
        // services another tool made: decoded exactly, firewall-mark ones skipped
        ipvsadm(&[
            "-A",
            "-t",
            "192.0.2.50:8080",
            "-s",
            "wlc",
            "-p",
            "60",
            "-M",
            "255.255.0.0",
        ]);
        ipvsadm(&[
            "-a",
            "-t",
            "192.0.2.50:8080",
            "-r",
            "198.51.100.60:80",
            "-m",
            "-w",
            "9",
        ]);
        ipvsadm(&["-A", "-f", "7", "-s", "rr"]);
        let mut state = initial();
        let mut svc =
            VirtualService::new(Protocol::Tcp, ip("192.0.2.50"), 8080, "wlc").with_persistence(60);
        svc.netmask = 16;
        state.push((svc.clone(), vec![rs("198.51.100.60", 80, 9, Forward::Masq)]));
        let listed = c.list_services().unwrap();
        assert_eq!(listed.len(), 5, "fwmark service skipped");
        let mut got = our_listing(&listed);
        got.push("FWM 7 rr".into()); // ipvsadm shows it; we do not model it
        let mut want = ipvsadm_listing();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        ipvsadm(&["-D", "-f", "7"]);
        assert_state(&mut c, &state);
        c.delete_service(&svc).unwrap();
        assert_state(&mut c, &initial());
    }

    fn delete() {
        let mut c = client();
        let mut state = initial();
        let gone = state[0].1.remove(0);
        c.delete_dest(&tcp(), &gone).unwrap();
        assert_state(&mut c, &state);
        // deleting a service takes its real servers with it
        c.delete_service(&udp()).unwrap();
        state.remove(1);
        assert_state(&mut c, &state);
        c.delete_service(&tcp6()).unwrap();
        state.pop();
        assert_state(&mut c, &state);
    }

    fn large_dumps() {
        let mut c = client();
        c.flush().unwrap();
        let mut state = vec![];
        // ~400 services: the GET_SERVICE dump spans many datagrams
        for port in 1..=400u16 {
            let svc = VirtualService::new(Protocol::Tcp, ip("203.0.113.1"), port, "rr");
            let d = rs("198.51.100.1", port, 1, Forward::Masq);
            c.add_service(&svc).unwrap();
            c.add_dest(&svc, &d).unwrap();
            state.push((svc, vec![d]));
        }
        // one service with 300 real servers: so does its GET_DEST dump
        let big = VirtualService::new(Protocol::Udp, ip("2001:db8::53"), 53, "wrr");
        c.add_service(&big).unwrap();
        let mut dests = vec![];
        for i in 1..=300u16 {
            let d = RealServer::new(
                ip(&format!("2001:db8:1::{i:x}")),
                5300 + i,
                u32::from(i % 5),
                Forward::Masq,
            );
            c.add_dest(&big, &d).unwrap();
            dests.push(d);
        }
        assert_eq!(c.list_dests(&big).unwrap().len(), 300);
        state.push((big, dests));
        assert_state(&mut c, &state);
    }

    fn flush() {
        let mut c = client();
        c.flush().unwrap();
        assert!(c.list_services().unwrap().is_empty());
        assert_eq!(ipvsadm_listing(), Vec::<String>::new());
    }
}
