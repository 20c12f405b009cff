#!/usr/bin/env python3
"""Generates the benchmark zone: CLUSTERS clusters x SERVICES services, ENDPOINTS endpoints
in total, as file-source YAML for causeway-dns, the equivalent NSD zone files, and a
dnsperf query file (A, SRV, PTR, cluster.all, NXDOMAIN).

Usage: gen.py OUT_DIR [--clusters 3] [--services 3000] [--endpoints 30000] [--port 5300]
"""
import argparse
import os
import random

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--clusters", type=int, default=3)
p.add_argument("--services", type=int, default=3000)
p.add_argument("--endpoints", type=int, default=30000)
p.add_argument("--queries", type=int, default=200000)
args = p.parse_args()
os.makedirs(args.out, exist_ok=True)
random.seed(42)
NAMES = "abcdefgh"[: args.clusters]
NAMESPACES = 30
per_cluster_eps = args.endpoints // args.clusters
TTL = 5


def svc_ip(k, i):
    return f"10.{100 + k}.{i // 250}.{i % 250 + 1}"


def pod_ip(k, j):
    return f"10.{k}.{j // 250}.{j % 250 + 1}"


def rev(ip):
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa."


# Service i of every cluster: namespace ns<i % 30>, name svc-<i>; every 10th is headless.
# Endpoints are dealt round-robin so each cluster has per_cluster_eps of them.
services = []
for i in range(args.services):
    services.append((f"ns{i % NAMESPACES}", f"svc-{i}", i % 10 == 0))
eps_of = {i: [] for i in range(args.services)}
for j in range(per_cluster_eps):
    eps_of[j % args.services].append(j)

zones = {}  # zone apex -> list of zone-file lines
reverse = {}  # reverse zone -> lines
all_a = {}  # (ns, name) -> list of A lines data
all_srv = {}
all_pods = []

for k, c in enumerate(NAMES):
    docs = []
    zone = f"cluster.{c}."
    lines = []
    for i, (ns, name, headless) in enumerate(services):
        owner = f"{name}.{ns}.svc.{zone}"
        eps = eps_of[i]
        if headless:
            docs.append(
                f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
                f"spec:\n  clusterIP: None\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n"
            )
        else:
            docs.append(
                f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
                f"spec:\n  clusterIP: {svc_ip(k, i)}\n  ports:\n  - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}\n"
            )
        ep_yaml = "".join(
            f"- addresses: [{pod_ip(k, j)}]\n  conditions: {{ready: true}}\n" for j in eps
        )
        docs.append(
            f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n"
            f"  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n{ep_yaml}"
            f"ports:\n- {{name: http, port: 8080, protocol: TCP}}\n"
        )
        srv = f"_http._tcp.{owner}"
        if headless:
            for j in eps:
                ip = pod_ip(k, j)
                label = ip.replace(".", "-")
                lines.append(f"{owner} {TTL} IN A {ip}")
                lines.append(f"{label}.{owner} {TTL} IN A {ip}")
                lines.append(f"{srv} {TTL} IN SRV 0 100 8080 {label}.{owner}")
                reverse.setdefault(f"{k}.10.in-addr.arpa.", []).append(f"{rev(ip)} {TTL} IN PTR {label}.{owner}")
                all_a.setdefault((ns, name), []).append(ip)
                pod = f"{label}.{c}.{name}.{ns}.svc.cluster.all."
                all_pods.append(f"{pod} {TTL} IN A {ip}")
                all_srv.setdefault((ns, name), []).append(f"0 100 8080 {pod}")
        else:
            ip = svc_ip(k, i)
            lines.append(f"{owner} {TTL} IN A {ip}")
            lines.append(f"{srv} {TTL} IN SRV 0 100 80 {owner}")
            reverse.setdefault(f"{100 + k}.10.in-addr.arpa.", []).append(f"{rev(ip)} {TTL} IN PTR {owner}")
            all_a.setdefault((ns, name), []).append(ip)
            all_srv.setdefault((ns, name), []).append(f"0 100 80 {owner}")
    zones[zone] = lines
    with open(os.path.join(args.out, f"cluster-{c}.yaml"), "w") as f:
        # One `kind: List` document (as `kubectl get -o yaml` prints it): the YAML parser
        # limits the number of documents in a multi-document file.
        f.write("apiVersion: v1\nkind: List\nitems:\n")
        for d in docs:
            lines = d.rstrip("\n").split("\n")
            f.write("- " + lines[0] + "\n" + "".join("  " + l + "\n" for l in lines[1:]))

lines = []
for (ns, name), ips in all_a.items():
    owner = f"{name}.{ns}.svc.cluster.all."
    lines += [f"{owner} {TTL} IN A {ip}" for ip in ips]
    lines += [f"_http._tcp.{owner} {TTL} IN SRV {s}" for s in all_srv[(ns, name)]]
lines += all_pods
zones["cluster.all."] = lines
zones.update(reverse)

conf = ["server:", "  ip-address: 127.0.0.1@5301", "  server-count: 1", "  username: \"\"",
        "  zonesdir: \"%s\"" % os.path.abspath(args.out), "  rrl-ratelimit: 0", "  verbosity: 0",
        "  pidfile: \"%s/nsd.pid\"" % os.path.abspath(args.out),
        "  database: \"\"", "  xfrdfile: \"%s/xfrd.state\"" % os.path.abspath(args.out),
        "  zonelistfile: \"%s/zone.list\"" % os.path.abspath(args.out),
        "remote-control:", "  control-enable: no"]
for apex, body in zones.items():
    fname = f"{apex.rstrip('.')}.zone"
    with open(os.path.join(args.out, fname), "w") as f:
        f.write(f"$ORIGIN {apex}\n$TTL {TTL}\n")
        f.write(f"@ IN SOA ns.dns.{apex} hostmaster.{apex} 1 7200 1800 86400 {TTL}\n@ IN NS ns.dns.{apex}\n")
        f.write("\n".join(body) + "\n")
    conf += ["zone:", f"  name: \"{apex}\"", f"  zonefile: \"{fname}\""]
with open(os.path.join(args.out, "nsd.conf"), "w") as f:
    f.write("\n".join(conf) + "\n")

clusters_yaml = "\n".join(
    f"- name: {c}\n  podCIDRs: [10.{k}.0.0/16]\n  serviceCIDRs: [10.{100 + k}.0.0/16]\n  source: {{file: cluster-{c}.yaml}}"
    for k, c in enumerate(NAMES)
)
with open(os.path.join(args.out, "config.yaml"), "w") as f:
    f.write(f"cluster: a\nclusters:\n{clusters_yaml}\ndns:\n  listen: [\"127.0.0.1:5300\"]\n"
            f"  metricsListen: \"127.0.0.1:9300\"\n  upstreams: [\"127.0.0.1:9\"]\n")

# Query mix: 35% A (cluster zones), 15% SRV, 15% PTR, 25% cluster.all (A and SRV), 10% NXDOMAIN.
qs = []
for _ in range(args.queries):
    r = random.random()
    k = random.randrange(len(NAMES))
    c = NAMES[k]
    i = random.randrange(args.services)
    ns, name, headless = services[i]
    if r < 0.35:
        qs.append(f"{name}.{ns}.svc.cluster.{c} A")
    elif r < 0.50:
        qs.append(f"_http._tcp.{name}.{ns}.svc.cluster.{c} SRV")
    elif r < 0.65:
        ip = pod_ip(k, random.choice(eps_of[i])) if headless else svc_ip(k, i)
        qs.append(f"{rev(ip).rstrip('.')} PTR")
    elif r < 0.85:
        qs.append(f"{name}.{ns}.svc.cluster.all A")
    elif r < 0.90:
        qs.append(f"_http._tcp.{name}.{ns}.svc.cluster.all SRV")
    else:
        qs.append(f"nope-{i}.{ns}.svc.cluster.{c} A")
with open(os.path.join(args.out, "queries.txt"), "w") as f:
    f.write("\n".join(qs) + "\n")
print(f"generated {len(NAMES)} clusters x {args.services} services, {per_cluster_eps * len(NAMES)} endpoints in {args.out}")
