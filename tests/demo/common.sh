# Sourced by the demo scripts (after setting `root`): what they share.

# Sets `bin` to the directory holding the binaries named: CAUSEWAY_BIN_DIR when set (the
# end-to-end tests set it, the binaries being built already), else builds them.
use_binaries() {
  if [ -n "${CAUSEWAY_BIN_DIR:-}" ]; then
    bin=$CAUSEWAY_BIN_DIR
    return
  fi
  local b args=()
  for b in "$@"; do
    # The test API server is a binary of the causeway-tests package, the others their own.
    [ "$b" = causeway-test-apiserver ] && args+=(-p causeway-tests) || args+=(-p "$b")
    args+=(--bin "$b")
  done
  echo "==> building $*"
  cargo build -q "${args[@]}"
  bin=${CARGO_TARGET_DIR:-$root/target}/debug
}

# The `clusters:` section: clusters a and b with their CIDRs, each followed through the
# kubeconfig its test API server wrote next to the configuration file.
clusters_config() {
  cat <<'YAML'
clusters:
  - name: a
    podCIDRs: ["10.128.0.0/14"]
    serviceCIDRs: ["172.30.0.0/16"]
    source: { kubeconfig: a.kubeconfig }
  - name: b
    podCIDRs: ["10.132.0.0/14"]
    serviceCIDRs: ["172.31.0.0/16"]
    source: { kubeconfig: b.kubeconfig }
YAML
}
