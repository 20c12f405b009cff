#!/usr/bin/env bash
# throughput.sh: iperf3 TCP pod-to-pod throughput between two "clusters" of network namespaces,
# (a) plain routing with no tunnel, (b) Debian's wireguard-go, (c) causeway's userspace WireGuard
# (wg_node example), same topology, same invocation, each the median of RUNS runs of SECS
# seconds. Prints Gbit/s, the ratios, and the CPU the tunnel daemons used (cores busy, cores per
# Gbit/s) next to the whole machine's busy cores.
#
#   <P>-a1 10.201.1.11 ─┐                                           ┌─ 10.202.1.11 <P>-b1
#   <P>-a2 10.201.1.12 ─┤ br0 10.201.1.1                br0 10.202.1.1 ├─ 10.202.1.12 <P>-b2
#                    <P>-an (node a: tunnel)       (node b: tunnel) <P>-bn
#                    ul0 192.0.2.2/24                   ul0 198.51.100.2/24
#                          └────────────── <P>-ul (underlay) ─────────┘
#                          192.0.2.1/24                 198.51.100.1/24
#            "load balancer" VIPs, nft DNAT in <P>-ul (one per node, like a LoadBalancer
#            Service of type externalTrafficPolicy: Local; client source addresses kept):
#                 203.0.113.1 -> 192.0.2.2        203.0.113.2 -> 198.51.100.2
#
# Pod CIDRs: cluster a 10.201.0.0/16 (node a's subnet 10.201.1.0/24), cluster b 10.202.0.0/16.
# Pods hang off a Linux bridge in their node's namespace by veth, MTU 1500. The tunnel runs in
# the node namespace; its peer's endpoint is the other node's VIP, its allowed IPs the other
# node's pod subnet, the route to the other cluster's pod CIDR goes through it with `src` = the
# bridge address, and SYNs leaving through it get their MSS clamped to the route MTU (the
# ruleset causeway-tunnel installs). Plain routing: the nodes route the other cluster's pod CIDR
# to the underlay, which routes it to the other node (only during that phase: in the tunnel
# phases the underlay knows no pod range, so nothing can bypass the tunnel). iperf3 client in
# <P>-a1, server in <P>-b1.
#
# Needs root, iproute2, nftables, iperf3, wireguard-go, wireguard-tools, python3, and a release
# build:
#   cargo build --release -p causeway-tunnel --example wg_node
# Usage: tunnel/bench/throughput.sh [RUNS=5] [SECS=5] [STREAMS=1]
# CAUSEWAY_WG_OFFLOAD=0 runs wg_node without TUN offloads; WG_THREADS sets its thread count;
# WG_NODE overrides the wg_node binary. All addresses exist only inside namespaces this script
# creates (10/8, RFC 5737); the root namespace is never touched.
set -euo pipefail
umask 077

RUNS=${1:-5} SECS=${2:-5} STREAMS=${3:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NODE=${WG_NODE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/wg_node}
[[ -x $NODE ]] || { echo "build first: cargo build --release -p causeway-tunnel --example wg_node" >&2; exit 2; }
for t in iperf3 wireguard-go wg ip nft python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
P=cwb$$
NA=$P-an NB=$P-bn UL=$P-ul
PODS_A=($P-a1 $P-a2) PODS_B=($P-b1 $P-b2)
ALL_NS=("${PODS_A[@]}" "${PODS_B[@]}" "$NA" "$NB" "$UL")
CIDR_A=10.201.0.0/16 CIDR_B=10.202.0.0/16 SUBNET_A=10.201.1.0/24 SUBNET_B=10.202.1.0/24
GW_A=10.201.1.1 GW_B=10.202.1.1
UL_A=192.0.2.1 NODE_A=192.0.2.2 UL_B=198.51.100.1 NODE_B=198.51.100.2
VIP_A=203.0.113.1 VIP_B=203.0.113.2
PORT=51820
SERVER=10.202.1.11 # pod b1
TMP=$(mktemp -d) PIDS=()
# The UAPI socket (/var/run/wireguard/NAME.sock) is not per namespace: one name per side.
WGGO_A=$P-ga WGGO_B=$P-gb

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ -s $TMP/iperf.pid ]] && kill "$(cat "$TMP/iperf.pid")" 2>/dev/null || true
    for ns in "${ALL_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -f /var/run/wireguard/"$WGGO_A".sock /var/run/wireguard/"$WGGO_B".sock
    rm -rf "$TMP"
}
trap cleanup EXIT
x() { ip netns exec "$@"; }

# A node namespace with a bridge and two pods: cluster LETTER, gateway GW (/24), pod namespaces.
mk_node() {
    local node=$1 gw=$2 i=1 pod; shift 2
    ip netns add "$node"
    x "$node" ip link set lo up
    x "$node" sysctl -qw net.ipv4.ip_forward=1
    x "$node" ip link add br0 type bridge
    x "$node" ip addr add "$gw/24" dev br0
    x "$node" ip link set br0 up
    for pod in "$@"; do
        ip netns add "$pod"
        x "$pod" ip link set lo up
        x "$node" ip link add "veth$i" type veth peer name eth0 netns "$pod"
        x "$node" ip link set "veth$i" master br0 up
        x "$pod" ip addr add "${gw%.1}.1$i/24" dev eth0
        x "$pod" ip link set eth0 up
        x "$pod" ip route add default via "$gw"
        i=$((i + 1))
    done
}

mk_node "$NA" "$GW_A" "${PODS_A[@]}"
mk_node "$NB" "$GW_B" "${PODS_B[@]}"
ip netns add "$UL"
x "$UL" ip link set lo up
x "$UL" sysctl -qw net.ipv4.ip_forward=1
# (Never name a link "a": `ip link add a ...` reads it as "address".)
x "$UL" ip link add to-a type veth peer name ul0 netns "$NA"
x "$UL" ip link add to-b type veth peer name ul0 netns "$NB"
x "$UL" ip addr add "$UL_A/24" dev to-a
x "$UL" ip addr add "$UL_B/24" dev to-b
x "$UL" ip link set to-a up
x "$UL" ip link set to-b up
x "$NA" ip addr add "$NODE_A/24" dev ul0
x "$NB" ip addr add "$NODE_B/24" dev ul0
x "$NA" ip link set ul0 up
x "$NB" ip link set ul0 up
x "$NA" ip route add default via "$UL_A"
x "$NB" ip route add default via "$UL_B"
# The underlay publishes each node's WireGuard port on a VIP, as a cloud load balancer would.
x "$UL" nft -f - <<EOF
table ip lb {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP_A udp dport $PORT dnat to $NODE_A
        ip daddr $VIP_B udp dport $PORT dnat to $NODE_B
    }
}
EOF

# What causeway-tunnel installs (tunnel/src/mss.rs): SYNs leaving through IFACE get MSS = route MTU.
mss_clamp() { # ns iface
    x "$1" nft -f - <<EOF
add table inet causeway_tunnel
delete table inet causeway_tunnel
table inet causeway_tunnel {
    chain forward {
        type filter hook forward priority mangle; policy accept;
        oifname "$2" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu
    }
    chain output {
        type filter hook output priority mangle; policy accept;
        oifname "$2" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu
    }
}
EOF
}

# Pod a1 reaches pod b1 and pod a2 reaches pod b2 (the first pings also complete the handshake).
check_path() {
    local ok=0 _
    for _ in $(seq 20); do x "${PODS_A[0]}" ping -c 1 -W 1 "$SERVER" >/dev/null 2>&1 && { ok=1; break; }; done
    [[ $ok == 1 ]] && x "${PODS_A[1]}" ping -c 1 -W 2 10.202.1.12 >/dev/null &&
        x "${PODS_B[1]}" ping -c 1 -W 2 10.201.1.12 >/dev/null ||
        { echo "no pod-to-pod path ($1)" >&2; exit 1; }
}

wg genkey >"$TMP/ka"; wg genkey >"$TMP/kb"
PA=$(wg pubkey <"$TMP/ka"); PB=$(wg pubkey <"$TMP/kb")

cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/"$p"/stat))); done; echo $t; }
# Busy ticks of the whole machine (everything but idle and iowait), all CPUs.
host_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
# Descendant processes of the given pids.
tree() { local p; for p in "$@"; do echo "$p"; tree $(cat /proc/"$p"/task/*/children 2>/dev/null); done; }

# measure NAME: RUNS iperf3 runs pod a1 -> pod b1; prints "NAME median_gbps daemon_cores host_cores runs=..."
measure() {
    local name=$1 i rates=() cores=() host=() daemons
    daemons=$(tree "${PIDS[@]}" 2>/dev/null | sort -u | tr '\n' ' ')
    x "${PODS_B[0]}" iperf3 -s -D -B "$SERVER" -I "$TMP/iperf.pid"; sleep 0.3
    for ((i = 0; i < RUNS; i++)); do
        local c0 c1 h0 h1 bps hz
        hz=$(getconf CLK_TCK)
        c0=$( [[ -n ${daemons// } ]] && cpu_ticks $daemons || echo 0); h0=$(host_ticks)
        bps=$(x "${PODS_A[0]}" timeout $((SECS + 20)) iperf3 -c "$SERVER" -t "$SECS" -P "$STREAMS" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
        c1=$( [[ -n ${daemons// } ]] && cpu_ticks $daemons || echo 0); h1=$(host_ticks)
        rates+=("$bps")
        cores+=("$(awk -v a="$c0" -v b="$c1" -v s="$SECS" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz/s}')")
        host+=("$(awk -v a="$h0" -v b="$h1" -v s="$SECS" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz/s}')")
    done
    kill "$(cat "$TMP/iperf.pid")" 2>/dev/null || true
    rm -f "$TMP/iperf.pid"
    python3 - "$name" "${rates[*]}" "${cores[*]}" "${host[*]}" <<'PY'
import statistics, sys
name = sys.argv[1]
rates = [float(x) / 1e9 for x in sys.argv[2].split()]
cores, host = ([float(x) for x in a.split()] for a in sys.argv[3:5])
print(f"{name} {statistics.median(rates):.3f} {statistics.median(cores):.2f} {statistics.median(host):.2f} runs="
      + ",".join(f"{r:.2f}" for r in rates))
PY
}

stop_daemons() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# Sides: namespace, key, peer key, peer VIP, peer subnet, peer cluster CIDR, own gateway.
side() {
    if [[ $1 == a ]]; then
        ns=$NA key=$TMP/ka peer=$PB vip=$VIP_B subnet=$SUBNET_B cidr=$CIDR_B gw=$GW_A
    else
        ns=$NB key=$TMP/kb peer=$PA vip=$VIP_A subnet=$SUBNET_A cidr=$CIDR_A gw=$GW_B
    fi
}

results=()

# (a) plain routing: node -> underlay -> node, no tunnel.
x "$NA" ip route add "$CIDR_B" via "$UL_A"
x "$NB" ip route add "$CIDR_A" via "$UL_B"
x "$UL" ip route add "$CIDR_A" via "$NODE_A"
x "$UL" ip route add "$CIDR_B" via "$NODE_B"
check_path plain
results+=("$(measure plain)")
x "$UL" ip route del "$CIDR_A"
x "$UL" ip route del "$CIDR_B"
x "$NA" ip route del "$CIDR_B"
x "$NB" ip route del "$CIDR_A"

# (b) wireguard-go on both nodes.
for s in a b; do
    side $s
    dev=$WGGO_A; [[ $s == b ]] && dev=$WGGO_B
    WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" wireguard-go -f "$dev" >/dev/null 2>&1 & PIDS+=($!)
    for _ in $(seq 100); do [[ -S /var/run/wireguard/$dev.sock ]] && break; sleep 0.1; done
    x "$ns" wg set "$dev" private-key "$key" listen-port $PORT peer "$peer" endpoint "$vip:$PORT" allowed-ips "$subnet"
    x "$ns" ip link set "$dev" mtu 1420 up
    x "$ns" ip route add "$cidr" dev "$dev" src "$gw"
    mss_clamp "$ns" "$dev"
done
check_path wireguard-go
results+=("$(measure wireguard-go)")
stop_daemons; sleep 0.5

# (c) causeway userspace WireGuard on both nodes (MTU 1420 as wireguard-go).
for s in a b; do
    side $s
    ip netns exec "$ns" "$NODE" cwb-cw "$key" $PORT "$peer" "$vip:$PORT" "$subnet" ${WG_THREADS:-} & PIDS+=($!)
    for _ in $(seq 50); do x "$ns" ip link show cwb-cw 2>/dev/null | grep -q UP && break; sleep 0.1; done
    sleep 0.2
    x "$ns" ip route add "$cidr" dev cwb-cw src "$gw"
    mss_clamp "$ns" cwb-cw
done
check_path causeway
results+=("$(measure causeway)")
stop_daemons

echo "iperf3 TCP pod -> pod across two clusters (bridge, node, underlay with VIP DNAT, node, bridge)"
echo "$STREAMS stream(s), $SECS s x $RUNS runs, median; $(nproc) CPUs, kernel $(uname -r)"
echo "load average (1, 5, 15 min) at start: $LOAD0; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %8s %13s %13s %11s  %s\n' path Gbit/s "daemon cores" "cores/Gbit/s" "host cores" runs
plain=0 wggo=0 ours=0
for r in "${results[@]}"; do
    read -r name g c h runs <<<"$r"
    case $name in plain) plain=$g ;; wireguard-go) wggo=$g ;; causeway) ours=$g ;; esac
    cpg=$(awk -v c="$c" -v g="$g" 'BEGIN{ if (c == 0) print "-"; else printf "%.2f", c/g }')
    printf '%-14s %8s %13s %13s %11s  %s\n' "$name" "$g" "$c" "$cpg" "$h" "$runs"
done
awk -v o="$ours" -v w="$wggo" -v p="$plain" 'BEGIN{printf "causeway / wireguard-go = %.2fx   causeway / plain = %.1f%%\n", o/w, 100*o/p}'
