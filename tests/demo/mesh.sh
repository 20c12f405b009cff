#!/usr/bin/env bash
# Two clusters joined by Causeway, built from network namespaces on this one machine.
#
# Each cluster has a test Kubernetes API server (loaded from tests/demo/mesh-{a,b}.yaml) and
# one node running the three real binaries: causeway-dns, causeway-proxy (nftables) and
# causeway-tunnel (userspace WireGuard on TUN). The tunnels find each other through the
# TunnelEndpoint each publishes to its own cluster's API. A pod of cluster a then resolves
# web.demo.svc.cluster.b through glibc and fetches it over HTTP: cluster a's proxy DNATs the
# ClusterIP to a pod of cluster b, cluster a's tunnel carries it, a web server in a pod of
# cluster b answers. Then the same from cluster b to cluster a, and the merged cluster.all name.
#
#   <P>-a-web 10.128.1.10 ─┐                               ┌─ 10.132.1.10 <P>-b-web1
#   <P>-a-cli 10.128.1.20 ─┤ br0 10.128.1.1   br0 10.132.1.1 ├─ 10.132.1.11 <P>-b-web2
#                       <P>-a (node a-node-1)     (node b-node-1) <P>-b ┤─ 10.132.1.20 <P>-b-cli
#            dns + proxy + tunnel, eth0 192.0.2.2      eth0 198.51.100.2, dns + proxy + tunnel
#                          └────────────── <P>-ul (underlay) ───────────┘
#                                192.0.2.1      198.51.100.1
#             API servers in the underlay: cluster a 203.0.113.10:6443, cluster b 203.0.113.20:6443
#
# Pod CIDRs: a 10.128.0.0/14, b 10.132.0.0/14; Service CIDRs: a 172.30.0.0/16, b 172.31.0.0/16.
# Every address exists only inside namespaces this script creates (10/8, RFC 5737); the root
# namespace is not touched. Pods' resolv.conf is /etc/netns/<pod>/resolv.conf, which
# `ip netns exec` mounts over /etc/resolv.conf. Needs root, iproute2, nftables, curl, python3.
# CAUSEWAY_BIN_DIR=<dir with the four binaries> skips the build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
. "$here/common.sh"

use_binaries causeway-dns causeway-proxy causeway-tunnel causeway-test-apiserver

P=cwm$$
UL=$P-ul
declare -A NODE=([a]=$P-a [b]=$P-b)
declare -A GW=([a]=10.128.1.1 [b]=10.132.1.1)          # bridge = node's pod-subnet address
declare -A ETH=([a]=192.0.2.2 [b]=198.51.100.2)       # node address on the underlay
declare -A ULIP=([a]=192.0.2.1 [b]=198.51.100.1)
declare -A API=([a]=203.0.113.10 [b]=203.0.113.20)
namespaces=()
pids=()
work=$(mktemp -d /tmp/causeway-mesh.XXXXXX)

cleanup() {
  local p ns
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  rmdir /etc/netns 2>/dev/null || true   # only if empty: others' files stay
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT   # so that a signal runs the cleanup too

x() { ip netns exec "$@"; }
newns() { ip netns add "$1"; namespaces+=("$1"); x "$1" ip link set lo up; }
spawn() { # log ns cmd...: a long-running process in a namespace, killed on exit
  local log=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" >"$work/$log.log" 2>&1 &
  pids+=($!)
}
wait_until() { # what tries cmd...: every 0.1 s
  local what=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  return 1
}

echo "==> namespaces: underlay $UL, nodes ${NODE[a]} ${NODE[b]}, pods $P-{a-web,a-cli,b-web1,b-web2,b-cli}"
newns "$UL"
x "$UL" sysctl -qw net.ipv4.ip_forward=1
x "$UL" ip addr add "${API[a]}/32" dev lo
x "$UL" ip addr add "${API[b]}/32" dev lo
for c in a b; do
  n=${NODE[$c]}
  newns "$n"
  x "$n" sysctl -qw net.ipv4.ip_forward=1
  # The node's own interface first, as on a real node (never name a link "a": `ip link add a`
  # reads it as "address").
  x "$UL" ip link add "to-$c" type veth peer name eth0 netns "$n"
  x "$UL" ip addr add "${ULIP[$c]}/24" dev "to-$c"
  x "$UL" ip link set "to-$c" up
  x "$n" ip addr add "${ETH[$c]}/24" dev eth0
  x "$n" ip link set eth0 up
  x "$n" ip route add default via "${ULIP[$c]}"
  x "$n" ip link add br0 type bridge
  x "$n" ip addr add "${GW[$c]}/24" dev br0
  x "$n" ip link set br0 up
done
i=0
add_pod() { # cluster name address
  local n=${NODE[$1]} pod=$P-$2
  i=$((i + 1))
  newns "$pod"
  x "$n" ip link add "veth$i" type veth peer name eth0 netns "$pod"
  x "$n" ip link set "veth$i" master br0 up
  x "$pod" ip addr add "$3/24" dev eth0
  x "$pod" ip link set eth0 up
  x "$pod" ip route add default via "${GW[$1]}"
  # What causeway-dns's webhook gives a selected pod: causeway-dns first, ClusterFirst's search path.
  mkdir -p "/etc/netns/$pod"
  printf 'nameserver %s\nsearch demo.svc.cluster.%s svc.cluster.%s cluster.%s\noptions ndots:5 timeout:2 attempts:2\n' \
    "${GW[$1]}" "$1" "$1" "$1" >"/etc/netns/$pod/resolv.conf"
}
add_pod a a-web 10.128.1.10
add_pod a a-cli 10.128.1.20
add_pod b b-web1 10.132.1.10
add_pod b b-web2 10.132.1.11
add_pod b b-cli 10.132.1.20

echo "==> web servers on :8080 in $P-a-web, $P-b-web1, $P-b-web2"
for pod in a-web b-web1 b-web2; do
  spawn "web-$pod" "$P-$pod" python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from pod %s, client %s\n" % (sys.argv[1], self.client_address[0])).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()' "$pod"
done

echo "==> test API servers in $UL: cluster a on ${API[a]}:6443, cluster b on ${API[b]}:6443"
for c in a b; do
  spawn "api-$c" "$UL" "$bin/causeway-test-apiserver" --listen "${API[$c]}:6443" --context "$c" \
    --kubeconfig-out "$work/$c.kubeconfig" --load "$here/mesh-$c.yaml"
done
for c in a b; do wait_until "the API server of cluster $c" 100 test -s "$work/$c.kubeconfig"; done

for c in a b; do
  cat >"$work/config-$c.yaml" <<YAML
cluster: $c
$(clusters_config)
dns:
  listen: ["${GW[$c]}:53"]
  metricsListen: 127.0.0.1:9153
  upstreams: ["127.0.0.1:9"]
proxy:
  interface: eth0
  backend: nftables
  metricsListen: 127.0.0.1:9154
  debugListen: 127.0.0.1:9164
tunnel:
  endpoint: { address: "${ETH[$c]}:51820" }
  metricsListen: 127.0.0.1:9155
  debugListen: 127.0.0.1:9165
YAML
done

for c in a b; do
  n=${NODE[$c]}
  echo "==> node $c-node-1 ($n): causeway-dns on ${GW[$c]}:53, causeway-proxy, causeway-tunnel"
  spawn "dns-$c" "$n" "$bin/causeway-dns" --config "$work/config-$c.yaml"
  spawn "proxy-$c" "$n" "$bin/causeway-proxy" --config "$work/config-$c.yaml"
  spawn "tunnel-$c" "$n" "$bin/causeway-tunnel" --config "$work/config-$c.yaml" \
    --node-name "$c-node-1" --state-dir "$work/state-$c" --userspace
done
for c in a b; do
  for port in 9153 9154 9155; do
    wait_until "/readyz on ${NODE[$c]} port $port" 300 x "${NODE[$c]}" curl -fs --max-time 1 "http://127.0.0.1:$port/readyz"
  done
done
# Each tunnel has a peer once it has read the other cluster's TunnelEndpoint.
peer_of() { x "${NODE[$1]}" curl -fs --max-time 1 http://127.0.0.1:9165/status | grep -q "\"node\": *\"$2-node-1\""; }
wait_until "cluster a's tunnel to peer with b-node-1" 300 peer_of a b
wait_until "cluster b's tunnel to peer with a-node-1" 300 peer_of b a
# The proxies have programmed the other cluster's Service once its ClusterIP is in one of
# their service maps.
has_service() { x "${NODE[$1]}" nft list ruleset | grep -q "$2 . tcp . 80 : goto"; }
wait_until "cluster a's proxy to program 172.31.0.80" 300 has_service a 172.31.0.80
wait_until "cluster b's proxy to program 172.30.0.80" 300 has_service b 172.30.0.80
echo "==> all six binaries ready; the tunnels found each other through their TunnelEndpoints"
for c in a b; do
  printf '\n$ kubectl --context %s get tunnelendpoints -A\n' "$c"
  x "$UL" curl -fs "http://${API[$c]}:6443/apis/causeway.io/v1alpha1/tunnelendpoints" |
    python3 -c 'import json,sys
for o in json.load(sys.stdin)["items"]:
    s = o["spec"]; print("%s/%s  node=%s endpoint=%s podCIDRs=%s publicKey=%s" % (o["metadata"]["namespace"], o["metadata"]["name"], s["node"], s.get("endpoint"), ",".join(s["podCIDRs"]), s["publicKey"]))'
done

show() { # ns command...: print and run
  local ns=$1; shift
  printf '\n[%s]$ %s\n' "$ns" "$*"
  x "$ns" "$@"
}
# The first packet starts the WireGuard handshake; curl retries until the path is up.
fetch() { # pod url
  printf '\n[%s]$ curl -s %s\n' "$1" "$2"
  x "$1" curl -s --max-time 3 --retry 10 --retry-delay 1 --retry-all-errors "$2"
}

echo
echo "==> a pod of cluster a resolves cluster b's service through glibc and fetches it"
show "$P-a-cli" getent hosts web.demo.svc.cluster.b
fetch "$P-a-cli" http://web.demo.svc.cluster.b/
fetch "$P-a-cli" http://web.demo.svc.cluster.b/
show "${NODE[a]}" curl -s http://127.0.0.1:9164/ipvs
printf '\n[%s]$ ip route show proto 147\n' "${NODE[a]}"
x "${NODE[a]}" ip route show proto 147

echo
echo "==> the reverse: a pod of cluster b reaches cluster a's service"
show "$P-b-cli" getent hosts web.demo.svc.cluster.a
fetch "$P-b-cli" http://web.demo.svc.cluster.a/

echo
echo "==> the merged zone: web.demo.svc.cluster.all has both clusters' ClusterIPs"
printf '\n[%s]$ getent ahostsv4 web.demo.svc.cluster.all | grep STREAM\n' "$P-a-cli"
x "$P-a-cli" getent ahostsv4 web.demo.svc.cluster.all | grep STREAM
# /status is refreshed by the tunnel's health loop (every 5 s).
handshake() { x "${NODE[a]}" curl -fs --max-time 1 http://127.0.0.1:9165/status | grep -q '"lastHandshakeSeconds":[0-9]'; }
wait_until "the handshake in cluster a's /status" 150 handshake
printf '\n[%s]$ curl /status (the tunnel)\n' "${NODE[a]}"
x "${NODE[a]}" curl -fs http://127.0.0.1:9165/status | python3 -c 'import json,sys
d = json.load(sys.stdin)
for p in d["peers"]:
    print("backend=%s peer %s/%s endpoint=%s allowedIPs=%s up=%s lastHandshake=%ss rx=%s tx=%s" % (d["backend"], p["cluster"], p["node"], p["endpoint"], ",".join(p["allowedIps"]), p["up"], p["lastHandshakeSeconds"], p["rxBytes"], p["txBytes"]))'
echo
echo "==> done; cleaning up"
