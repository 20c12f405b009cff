//! Prints the TunnelEndpoint CRD as YAML: `cargo run -p causeway-shared --example print-crd`.
//! `manifests/base/crd-tunnelendpoints.yaml` is this output (a test checks they match).

fn main() {
    print!("{}", causeway_shared::crd::crd_yaml());
}
