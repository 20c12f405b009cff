#!/usr/bin/env bash
# throughput.sh: iperf3 TCP throughput between two network namespaces joined by a veth pair,
# (a) plain routing, (b) Debian's wireguard-go, (c) causeway's userspace WireGuard (wg_node
# example), each the median of RUNS runs of SECS seconds. Prints Gbit/s, ratios, and the CPU the
# tunnel daemons used (cores busy, and cores per Gbit/s).
#
# Needs root, iproute2, iperf3, wireguard-go, wireguard-tools, and a release build:
#   cargo build --release -p causeway-tunnel --example wg_node
# Usage: tunnel/bench/throughput.sh [RUNS=5] [SECS=5] [STREAMS=1]
# CAUSEWAY_WG_OFFLOAD=0 runs wg_node without TUN offloads; WG_THREADS sets its thread count.
# Addresses: underlay 192.0.2.0/24, tunnel 198.51.100.0/24 (RFC 5737), only inside our namespaces.
set -euo pipefail
umask 077

RUNS=${1:-5} SECS=${2:-5} STREAMS=${3:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NODE=${WG_NODE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/wg_node}
[[ -x $NODE ]] || { echo "build first: cargo build --release -p causeway-tunnel --example wg_node" >&2; exit 2; }
for t in iperf3 wireguard-go wg ip; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

P=cwb-$$; A=$P-a; B=$P-b; TMP=$(mktemp -d); PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
na() { ip netns exec "$A" "$@"; }
nb() { ip netns exec "$B" "$@"; }

ip netns add "$A"; ip netns add "$B"
na ip link set lo up; nb ip link set lo up
na ip link add cwb-va type veth peer name cwb-vb netns "$B"
na ip addr add 192.0.2.1/24 dev cwb-va; nb ip addr add 192.0.2.2/24 dev cwb-vb
na ip link set cwb-va up; nb ip link set cwb-vb up

wg genkey >"$TMP/ka"; wg genkey >"$TMP/kb"
PA=$(wg pubkey <"$TMP/ka"); PB=$(wg pubkey <"$TMP/kb")

cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/"$p"/stat))); done; echo $t; }
# Descendant processes of the given pids (ip netns exec forks the daemon).
tree() { local p; for p in "$@"; do echo "$p"; tree $(cat /proc/"$p"/task/*/children 2>/dev/null); done; }

# measure NAME DST: RUNS iperf3 runs; prints "NAME median_gbps cores"
measure() {
    local name=$1 dst=$2 i rates=() cores=() daemons
    daemons=$(tree "${PIDS[@]}" 2>/dev/null | sort -u | tr '\n' ' ')
    nb iperf3 -s -D -B "$dst" -I "$TMP/iperf.pid"; sleep 0.3
    for ((i = 0; i < RUNS; i++)); do
        local c0 c1 bps
        c0=$( [[ -n ${daemons// } ]] && cpu_ticks $daemons || echo 0)
        bps=$(na timeout $((SECS + 20)) iperf3 -c "$dst" -t "$SECS" -P "$STREAMS" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
        c1=$( [[ -n ${daemons// } ]] && cpu_ticks $daemons || echo 0)
        rates+=("$bps"); cores+=("$(awk -v a="$c0" -v b="$c1" -v s="$SECS" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz/s}')")
    done
    kill "$(cat "$TMP/iperf.pid")" 2>/dev/null || true
    python3 - "$name" "${rates[*]}" "${cores[*]}" <<'PY'
import statistics, sys
name, rates, cores = sys.argv[1], [float(x) / 1e9 for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"{name} {statistics.median(rates):.3f} {statistics.median(cores):.2f} runs=" + ",".join(f"{r:.2f}" for r in rates))
PY
}

stop_daemons() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

results=()
results+=("$(measure plain 192.0.2.2)")

# (b) wireguard-go on both sides
for side in a b; do
    ns=$A; key=$TMP/ka; peer=$PB; ep=192.0.2.2; me=198.51.100.1; other=198.51.100.2
    [[ $side == b ]] && { ns=$B; key=$TMP/kb; peer=$PA; ep=192.0.2.1; me=198.51.100.2; other=198.51.100.1; }
    # The UAPI socket (/var/run/wireguard/NAME.sock) is not per namespace: one name per side.
    dev=cwb-wg$side
    WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" wireguard-go -f $dev >/dev/null 2>&1 & PIDS+=($!)
    for _ in $(seq 100); do ip netns exec "$ns" ip link show $dev >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns exec "$ns" wg set $dev private-key "$key" listen-port 51820 peer "$peer" endpoint "$ep:51820" allowed-ips "$other/32"
    ip netns exec "$ns" ip addr add "$me/32" dev $dev
    ip netns exec "$ns" ip link set $dev mtu 1420 up
    ip netns exec "$ns" ip route add "$other/32" dev $dev
done
na ping -c 1 -W 5 198.51.100.2 >/dev/null
results+=("$(measure wireguard-go 198.51.100.2)")
stop_daemons; sleep 0.5

# (c) causeway userspace WireGuard on both sides
for side in a b; do
    ns=$A; key=$TMP/ka; peer=$PB; ep=192.0.2.2; me=198.51.100.1; other=198.51.100.2
    [[ $side == b ]] && { ns=$B; key=$TMP/kb; peer=$PA; ep=192.0.2.1; me=198.51.100.2; other=198.51.100.1; }
    ip netns exec "$ns" "$NODE" cwb-cw "$key" 51820 "$peer" "$ep:51820" "$other/32" ${WG_THREADS:-} & PIDS+=($!)
    for _ in $(seq 50); do ip netns exec "$ns" ip link show cwb-cw >/dev/null 2>&1 && break; sleep 0.1; done
    sleep 0.2
    ip netns exec "$ns" ip addr add "$me/32" dev cwb-cw
    ip netns exec "$ns" ip route add "$other/32" dev cwb-cw
done
na ping -c 1 -W 5 198.51.100.2 >/dev/null
results+=("$(measure causeway 198.51.100.2)")
stop_daemons

echo "iperf3 TCP, $STREAMS stream(s), $SECS s x $RUNS runs, median; $(nproc) CPUs, kernel $(uname -r)"
printf '%-14s %10s %14s %14s  %s\n' path Gbit/s "daemon cores" "cores/Gbit/s" runs
plain=0; wggo=0
for r in "${results[@]}"; do
    read -r name g c runs <<<"$r"
    [[ $name == plain ]] && plain=$g
    [[ $name == wireguard-go ]] && wggo=$g
    cpg=$(awk -v c="$c" -v g="$g" 'BEGIN{ if (c == 0) print "-"; else printf "%.2f", c/g }')
    printf '%-14s %10s %14s %14s  %s\n' "$name" "$g" "$c" "$cpg" "$runs"
done
ours=$(awk '{print $2}' <<<"${results[2]}")
awk -v o="$ours" -v w="$wggo" -v p="$plain" 'BEGIN{printf "causeway / wireguard-go = %.2fx   causeway / plain = %.1f%%\n", o/w, 100*o/p}'
