#!/usr/bin/env bash
# The fault suite in one command: every test behind a row of docs/RELIABILITY.md, each run
# with its output, then the figures they printed. Root is needed (network namespaces).
# They also run in `cargo test --workspace`; this runs only them, and `RUNS=3` repeats
# each (the figures of docs/RELIABILITY.md are min / median / max of such runs).
#
#   tests/faults/run.sh            # once
#   RUNS=3 tests/faults/run.sh     # three times each
#   CAUSEWAY_FUZZ_CASES=500000 tests/faults/run.sh   # longer fuzzing
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-1}
suite=(
  "causeway-tunnel restart_binary"
  "causeway-tunnel wg_userspace fifty_megabytes"
  "causeway-tunnel remote_outage_restart"
  "causeway-dns remote_outage_restart"
  "causeway-proxy remote_outage_restart"
  "causeway-proxy netns_traffic"
  "causeway-proxy nft_backend"
  "causeway-tests path_health"
  "causeway-shared panic_hook"
  "causeway-dns api_faults"
  "causeway-dns many_clusters"
  "causeway-dns hostile_objects"
  "causeway-dns fuzz_dns"
  "causeway-tests fuzz_inputs"
)
# The binaries the end-to-end tests start (causeway-tests finds them beside itself).
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for entry in "${suite[@]}"; do
  read -r package test filter <<<"$entry"
  for ((i = 1; i <= runs; i++)); do
    echo "== $package --test $test ${filter:-} (run $i of $runs)"
    if ! cargo test -q -p "$package" --test "$test" -- --nocapture ${filter:+"$filter"} >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "FAILED: $package --test $test" >&2
      exit 1
    fi
    # The figures the test printed, and its summary.
    grep -E 'test result|clear packets|Gbit/s|ready after|path lossy|peer address|remote node|path cut|path down|api faults|kill -9|clusters x|inputs|datagrams|bodies|1,000|restart:' "$log" \
      | grep -v -e $'\x1b' -e '^\s*$' || true
  done
done
echo "== every fault test passed"
