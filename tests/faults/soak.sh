#!/usr/bin/env bash
# Soak: causeway-dns under dnsperf at a fixed rate for a long time while one cluster's file
# changes every second; its resident memory is sampled every 10 s. Passes when no query was
# lost and the memory at the end is within 10 % of what it was after the first minute (or
# the first sample, in a shorter run).
#
#   tests/faults/soak.sh [SECONDS] [QPS]     (default 600 s at 20,000 queries/s)
#   CAUSEWAY_DNS_BIN=target/debug/causeway-dns tests/faults/soak.sh 60 2000
#
# Needs dnsperf and python3; the zone is the benchmark's (dns/bench/gen.py: 3 clusters x
# 3,000 services, 30,000 endpoints). Uses ports 5300 (DNS) and 9300 (metrics) on loopback.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dur=${1:-600}
qps=${2:-20000}
bin=${CAUSEWAY_DNS_BIN:-$root/target/release/causeway-dns}
[ -x "$bin" ] || { echo "no $bin (cargo build --release -p causeway-dns)" >&2; exit 2; }
out=$(mktemp -d /tmp/causeway-soak.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 "$root/dns/bench/gen.py" "$out" > /dev/null
"$bin" --config "$out/config.yaml" > "$out/causeway.log" 2>&1 &
dpid=$!; pids+=("$dpid")
for _ in $(seq 1 600); do
  curl -sf 127.0.0.1:9300/readyz > /dev/null && break
  sleep 0.1
done
curl -sf 127.0.0.1:9300/readyz > /dev/null || { echo "never ready" >&2; tail "$out/causeway.log" >&2; exit 1; }

# One Service of cluster b moves between two addresses every second.
file="$out/cluster-b.yaml"
python3 - "$file" "$dur" > "$out/changes.txt" <<'PY' &
import os, sys, time
path, dur = sys.argv[1], float(sys.argv[2])
base = open(path).read()
end = time.monotonic() + dur
n = 0
while time.monotonic() < end:
    n += 1
    extra = (f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: soak, namespace: bench}}\n"
             f"spec:\n  clusterIP: 10.101.251.{1 + n % 2}\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(base + extra)
    os.rename(tmp, path)
    time.sleep(1)
print(n)
PY
upid=$!; pids+=("$upid")

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
: > "$out/rss.txt"
( while kill -0 "$dpid" 2>/dev/null; do echo "$(date +%s) $(rss_kb "$dpid")" >> "$out/rss.txt"; sleep 10; done ) &
spid=$!; pids+=("$spid")

dnsperf -s 127.0.0.1 -p 5300 -d "$out/queries.txt" -l "$dur" -Q "$qps" -c 4 -T 1 > "$out/perf.txt" 2>&1
wait "$upid"
kill "$spid" 2>/dev/null || true
sent=$(awk '/Queries sent/ {print $3}' "$out/perf.txt")
done_=$(awk '/Queries completed/ {print $3}' "$out/perf.txt")
lost=$(awk '/Queries lost/ {print $3}' "$out/perf.txt")
achieved=$(awk '/Queries per second/ {print $4}' "$out/perf.txt")
# Memory after the first minute (or the first sample) against the end.
read -r first min max last < <(awk -v start="$(head -1 "$out/rss.txt" | cut -d' ' -f1)" -v dur="$dur" '
  { t = $1 - start; kb = $2 }
  (dur >= 120 && t >= 60 || dur < 120) && !seen { first = kb; seen = 1 }
  seen { if (min == "" || kb < min) min = kb; if (kb > max) max = kb; last = kb }
  END { printf "%.1f %.1f %.1f %.1f\n", first/1024, min/1024, max/1024, last/1024 }' "$out/rss.txt")
alive=yes; kill -0 "$dpid" 2>/dev/null || alive=no
echo "soak: ${dur} s at ${qps} queries/s asked (${achieved} achieved), $(cat "$out/changes.txt") changes of cluster b's file (one a second)"
echo "  queries sent $sent, completed $done_, lost $lost; causeway-dns still running: $alive"
echo "  resident MB: reference $first, min $min, max $max, end $last"
growth=$(echo "$last $first" | awk '{printf "%.1f", ($1 - $2) / $2 * 100}')
echo "  growth after the reference: ${growth} %"
[ "$alive" = yes ] && [ "$lost" = 0 ] && awk -v g="$growth" 'BEGIN {exit !(g < 10)}'
