#!/usr/bin/env bash
# Two clusters talking, on one machine, no cluster needed.
#
# Starts two test Kubernetes API servers ("clusters" a and b, loaded from
# tests/demo/cluster-{a,b}.yaml), then causeway-dns configured for both, following them
# through the real Kubernetes list/watch protocol. It then resolves names of both
# clusters and of the merged zone, changes cluster b live and shows the new answer, and
# takes cluster b's API away to show that its last-known data keeps being served.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
. "$here/common.sh"

use_binaries causeway-dns causeway-test-apiserver

work=$(mktemp -d /tmp/causeway-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_cluster() { # name port
  "$bin/causeway-test-apiserver" --listen "127.0.0.1:$2" --context "$1" \
    --kubeconfig-out "$work/$1.kubeconfig" --load "$here/cluster-$1.yaml" >"$work/$1.log" 2>&1 &
  pids+=($!)
}
port_a=$(free_port); port_b=$(free_port); dns_port=$(free_port); metrics_port=$(free_port)
start_cluster a "$port_a"
start_cluster b "$port_b"
for c in a b; do
  for _ in $(seq 100); do [ -s "$work/$c.kubeconfig" ] && break; sleep 0.1; done
done

cat >"$work/config.yaml" <<YAML
cluster: a
$(clusters_config)
dns:
  listen: ["127.0.0.1:$dns_port"]
  metricsListen: "127.0.0.1:$metrics_port"
  upstreams: ["127.0.0.1:9"]
YAML
echo "==> causeway-dns on 127.0.0.1:$dns_port, following cluster a (:$port_a) and cluster b (:$port_b)"
"$bin/causeway-dns" --config "$work/config.yaml" >"$work/dns.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break; sleep 0.1
done
curl -fs "http://127.0.0.1:$metrics_port/readyz" >/dev/null || { echo "causeway-dns did not become ready"; cat "$work/dns.log"; exit 1; }

q() { # name type
  printf '\n$ dig +short %s %s\n' "$2" "$1"
  dig @127.0.0.1 -p "$dns_port" +short +time=2 +tries=1 "$1" "$2"
}
q web.demo.svc.cluster.a A
q web.demo.svc.cluster.b A
q web.demo.svc.cluster.all A
q _http._tcp.web.demo.svc.cluster.all SRV
q db.demo.svc.cluster.b A
q db-0.db.demo.svc.cluster.b A
q 80.0.31.172.in-addr.arpa PTR
printf '\n$ dig nosuch.demo.svc.cluster.b  (status)\n'
dig @127.0.0.1 -p "$dns_port" +time=2 +tries=1 nosuch.demo.svc.cluster.b A | grep -o 'status: [A-Z]*'

echo
echo "==> cluster b gets a new service; the answer follows the watch"
kubectl --kubeconfig "$work/b.kubeconfig" apply --validate=false -f - >/dev/null <<'JSON'
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache", "namespace": "demo"},
 "spec": {"clusterIP": "172.31.0.99", "ports": [{"name": "redis", "port": 6379, "protocol": "TCP"}]}}
JSON
for _ in $(seq 50); do
  [ -n "$(dig @127.0.0.1 -p "$dns_port" +short cache.demo.svc.cluster.b A)" ] && break; sleep 0.1
done
q cache.demo.svc.cluster.b A

echo
echo "==> cluster b's API goes away; its last-known data stays served"
kill "${pids[1]}"
sleep 1
q web.demo.svc.cluster.b A
printf '\n$ curl /readyz\n'
curl -s "http://127.0.0.1:$metrics_port/readyz"
echo
echo "==> done (logs were in $work)"
