//! Bounded mutation fuzzing of the inputs every binary reads from files (see
//! `causeway_tests::fuzz`): the configuration, the `file:` source's objects and the saved
//! last-good state. No input may panic; a refused one is an error that names the file (and
//! for the configuration its field).
//!
//! A longer run: `CAUSEWAY_FUZZ_CASES=500000 cargo test -p causeway-tests --test fuzz_inputs`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use causeway_shared::config::Config;
use causeway_shared::source::parse_objects;
use causeway_shared::source::persist;
use causeway_tests::fuzz::{self, Mutator};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_configuration_parser_never_panics_and_names_the_file() {
    let corpus = vec![
        read("manifests/base/config.yaml"),
        read("manifests/openshift/config.yaml"),
        read("tests/demo/mesh-a.yaml"),
        b"cluster: a\nclusters:\n  - {name: a, podCIDRs: [10.0.0.0/16], source: {inCluster: true}}\n  - {name: b, serviceCIDRs: [\"fd00::/112\"], source: {file: b.yaml}}\ndns: {ttl: 5, allowFrom: [10.0.0.0/8]}\nproxy: {fullResyncInterval: 5m}\ntunnel: {staticPeers: [{publicKey: x, allowedIPs: [10.9.0.0/16]}]}\npathHealth: {unreachableAfter: 3s}\nreadiness: {remoteSyncTimeout: 1s}\n".to_vec(),
    ];
    let path = Path::new("/etc/causeway/config.yaml");
    let (mut accepted, mut refused) = (0, 0);
    let ran = fuzz::run(
        "config",
        &corpus,
        &Mutator::text(),
        fuzz::cases(3000),
        |input| {
            let text = String::from_utf8_lossy(input);
            match Config::from_yaml(path, &text) {
                Ok(cfg) => {
                    accepted += 1;
                    // What loads is usable: the derived values do not panic either.
                    let _ = cfg.dns_allow_from();
                    let _ = cfg.path_health_url();
                    let _ = cfg.local();
                }
                Err(e) => {
                    refused += 1;
                    let msg = e.to_string();
                    assert!(msg.starts_with("/etc/causeway/config.yaml: "), "{msg}");
                }
            }
        },
    );
    println!("config: {ran} inputs, {accepted} accepted, {refused} refused");
    assert!(
        accepted > 3 && refused > ran / 4,
        "the mutations reach both outcomes"
    );
}

#[test]
fn the_file_source_parser_never_panics() {
    let corpus = vec![
        read("tests/demo/cluster-a.yaml"),
        read("tests/demo/cluster-b.yaml"),
        read("dns/tests/fixtures/cluster-a.yaml"),
        read("dns/tests/fixtures/cluster-b.yaml"),
        br#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"},"spec":{"podCIDRs":["10.0.1.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}},{"apiVersion":"causeway.io/v1alpha1","kind":"TunnelEndpoint","metadata":{"name":"n1","namespace":"causeway"},"spec":{"node":"n1","publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","endpoint":"192.0.2.1:51820","podCIDRs":["10.0.1.0/24"],"probeEndpoint":"10.0.1.1:51821"}}]}"#.to_vec(),
    ];
    let (mut ok, mut bad) = (0, 0);
    let ran = fuzz::run(
        "objects",
        &corpus,
        &Mutator::text(),
        fuzz::cases(3000),
        |input| match parse_objects(&String::from_utf8_lossy(input)) {
            Ok(_) => ok += 1,
            Err(e) => {
                bad += 1;
                assert!(!e.to_string().is_empty());
            }
        },
    );
    println!("objects: {ran} inputs, {ok} parsed, {bad} refused");
    assert!(ok > 3 && bad > 3, "the mutations reach both outcomes");
}

#[test]
fn the_saved_state_decoder_never_panics_and_names_the_file() {
    let corpus: Vec<Vec<u8>> = [
        "tests/demo/cluster-a.yaml",
        "dns/tests/fixtures/cluster-b.yaml",
    ]
    .iter()
    .map(|p| {
        let (data, _) = parse_objects(&String::from_utf8(read(p)).unwrap()).unwrap();
        persist::encode(
            "b",
            &data,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
    })
    .collect();
    let path = Path::new("/var/lib/causeway/state/dns/cluster-b.json");
    let (mut ok, mut bad) = (0, 0);
    let ran = fuzz::run(
        "state",
        &corpus,
        &Mutator::text(),
        fuzz::cases(3000),
        |input| match persist::decode(path, "b", input) {
            Ok(_) => ok += 1,
            Err(e) => {
                bad += 1;
                assert!(e.to_string().contains("cluster-b.json"), "{e}");
            }
        },
    );
    println!("state: {ran} inputs, {ok} decoded, {bad} refused");
    assert!(
        ok >= 2 && bad > ran / 4,
        "the mutations reach both outcomes"
    );
}
