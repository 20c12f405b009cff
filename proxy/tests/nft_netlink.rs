//! The netlink writer against `nft` itself: the same operations, sent once as our
//! netlink messages and once as `nft -f` text to two network namespaces, must leave the
//! kernel holding exactly the same ruleset, down to each rule's expressions and
//! registers (`nft --debug=netlink list ruleset`), but for one deliberate difference: the
//! `meta l4proto P` match nft's syntax needs before `dnat … to A:P` is not sent over
//! netlink (`Stmt::ProtoContext`).

mod conformance;
mod netns;

use causeway_proxy::backend::Backend;
use causeway_proxy::backend::nft::{NftBackend, Writer};
use causeway_proxy::plan::DesiredState;

/// Everything the layout renders: round robin with a draining real, source hashing
/// with affinity, random choice, UDP, SCTP, IPv6, a service without endpoints.
fn rich() -> DesiredState {
    use causeway_shared::model::Protocol::{Tcp, Udp};
    use conformance::{key, vs};
    let mut d = conformance::v1();
    for (k, vs) in conformance::v2().services {
        d.services.entry(k).or_insert(vs);
    }
    let sh = |reals| vs("b", "web", "sh", reals, Some(30));
    let reals = [
        ("198.51.100.21:80", 1),
        ("198.51.100.22:80", 2),
        ("198.51.100.23:80", 0),
    ];
    d.services.insert(key(Tcp, "192.0.2.40:80"), sh(&reals));
    let reals = [("[2001:db8:10::21]:80", 1), ("[2001:db8:10::22]:80", 1)];
    d.services.insert(
        key(Udp, "[2001:db8:5::40]:53"),
        vs("b", "web", "lc", &reals, None),
    );
    let reals = [("[2001:db8:10::31]:80", 1), ("[2001:db8:10::32]:80", 1)];
    d.services
        .insert(key(Tcp, "[2001:db8:5::41]:80"), sh(&reals));
    d
}

/// The first differing line of two listings, with the lines before it.
fn first_difference(ours: &str, theirs: &str) -> Option<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    let at = (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i))?;
    let from = at.saturating_sub(6);
    Some(format!(
        "{}\n-- netlink: {:?}\n-- nft:     {:?}",
        a[from..at].join("\n"),
        a.get(at),
        b.get(at)
    ))
}

/// The ruleset, with each run of set elements sorted (a hash set lists its elements in
/// an order of its own).
fn listing(ns: &str, debug: bool) -> String {
    let flag = if debug { "--debug=netlink " } else { "" };
    let text = netns::run(&format!("ip netns exec {ns} nft {flag}list ruleset"));
    let mut out: Vec<&str> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\telement ") {
            run.push(line);
            continue;
        }
        run.sort_unstable();
        out.append(&mut run);
        out.push(line);
    }
    run.sort_unstable();
    out.append(&mut run);
    out.join("\n")
}

/// `nft`'s listing without the protocol matches in front of a DNAT (what the netlink
/// writer leaves out), in the ruleset text and, with `debug`, in the expressions listed
/// before it; panics when there are none to remove.
fn without_dnat_protocol_match(listing: &str, debug: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    let (mut in_text, mut in_exprs) = (0, 0);
    let mut lines = listing.lines().peekable();
    while let Some(line) = lines.next() {
        // `[ meta load l4proto => reg 1 ]` `[ cmp eq reg 1 0x00000006 ]`, then the DNAT's
        // immediates (the vmap's protocol goes to another register).
        if debug
            && line.trim() == "[ meta load l4proto => reg 1 ]"
            && lines
                .peek()
                .is_some_and(|l| l.trim().starts_with("[ cmp eq reg 1 "))
        {
            lines.next();
            in_exprs += 1;
            continue;
        }
        let mut l = line.to_string();
        for p in ["tcp", "udp", "sctp"] {
            let from = format!("meta l4proto {p} dnat ");
            in_text += l.matches(&from).count();
            l = l.replace(&from, "dnat ");
        }
        out.push(l);
    }
    assert!(
        in_text > 0,
        "no protocol match before a DNAT in:\n{listing}"
    );
    if debug {
        assert_eq!(in_exprs, in_text, "{listing}");
    }
    out.join("\n")
}

fn backend(ns: &str, writer: Writer) -> NftBackend {
    NftBackend::new("cwnl")
        .shards(3)
        .writer(writer)
        .keep_sources(
            [
                "10.128.0.0/14",
                "10.132.0.0/16",
                "10.16.0.0/12",
                "fd00:128::/48",
            ]
            .iter()
            .map(|s| s.parse().unwrap()),
        )
        .in_netns(ns)
}

#[test]
fn netlink_writer_leaves_the_same_ruleset_as_nft() {
    let a = netns::namespace("nla");
    let b = netns::namespace("nlb");
    let mut ours = backend(a.name(), Writer::Netlink);
    let mut theirs = backend(b.name(), Writer::Nft);
    let steps = [rich(), conformance::v2(), conformance::v3(), rich()];
    let mut previous: Option<DesiredState> = None;
    for (i, d) in steps.iter().enumerate() {
        ours.apply(d, previous.as_ref()).expect("netlink apply");
        theirs.apply(d, previous.as_ref()).expect("nft apply");
        for debug in [false, true] {
            let x = listing(a.name(), debug);
            let y = without_dnat_protocol_match(&listing(b.name(), debug), debug);
            assert!(x.contains("table inet cwnl-2"), "{x}");
            if let Some(diff) = first_difference(&x, &y) {
                panic!("step {i} (debug {debug}): netlink writer vs nft differ:\n{diff}");
            }
        }
        previous = Some(d.clone());
    }
    // And what the netlink writer left reads back as what was applied.
    let back = backend(a.name(), Writer::Netlink).read().unwrap();
    assert_eq!(back.to_desired(|_| None), rich());
}

#[test]
fn refused_operations_are_named_and_change_nothing() {
    let a = netns::namespace("nlerr");
    let mut ours = backend(a.name(), Writer::Netlink);
    ours.apply(&conformance::v3(), None).unwrap();
    // A partial apply from a wrong idea of the kernel (services that are not there):
    // the kernel refuses removing them, and the error says which operation it was.
    let err = ours
        .apply(&conformance::v2(), Some(&conformance::v1()))
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("nf_tables refused `delete element inet cwnl-"),
        "{text}"
    );
    assert!(text.contains("No such file or directory"), "{text}");
    // All or nothing: v2's new service was not added either.
    let after = listing(a.name(), false);
    assert!(!after.contains("192.0.2.11"), "{after}");
    // The next (full) apply repairs everything.
    ours.apply(&conformance::v2(), Some(&conformance::v1()))
        .unwrap();
    let back = backend(a.name(), Writer::Netlink).read().unwrap();
    assert_eq!(back.to_desired(|_| None), conformance::v2());
}

#[test]
fn a_single_table_of_an_earlier_layout_is_replaced_in_one_transaction() {
    let a = netns::namespace("nlup");
    let fresh = netns::namespace("nlfr");
    // What an earlier version left: everything in the base table.
    netns::run(&format!(
        "ip netns exec {} nft -f - <<'EOF'
table inet cwnl {{
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}
  chain services {{ ip daddr . meta l4proto . th dport vmap @service-ips; }}
  chain svc-old {{ counter meta l4proto tcp dnat ip to 198.51.100.99:80; }}
  chain nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; masquerade; }}
}}
add element inet cwnl service-ips {{ 192.0.2.99 . tcp . 80 : goto svc-old }}
EOF",
        a.name()
    ));
    backend(a.name(), Writer::Netlink)
        .apply(&rich(), None)
        .unwrap();
    backend(fresh.name(), Writer::Netlink)
        .apply(&rich(), None)
        .unwrap();
    assert_eq!(listing(a.name(), false), listing(fresh.name(), false));
}
