#!/usr/bin/env python3
"""Appends a new Service to a file-source cluster file and measures the time until
causeway-dns answers it. Usage: update_latency.py CLUSTER_FILE PORT -> prints milliseconds
(median of 5 changes)."""
import os
import socket
import struct
import sys
import time

path, port = sys.argv[1], int(sys.argv[2])
cluster = os.path.basename(path)[len("cluster-"):-len(".yaml")]


def query(sock, name):
    qid = 0x1234
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        pkt += bytes([len(label)]) + label.encode()
    pkt += b"\x00" + struct.pack(">HH", 1, 1)
    sock.send(pkt)
    resp = sock.recv(4096)
    return struct.unpack(">H", resp[6:8])[0]  # ANCOUNT


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect(("127.0.0.1", port))
sock.settimeout(1.0)
results = []
for n in range(5):
    name = f"probe-{n}"
    with open(path, "a") as f:
        f.write(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench}}\n"
                f"spec:\n  clusterIP: 10.{100 + 'abcdefgh'.index(cluster)}.250.{n + 1}\n")
    start = time.monotonic()
    while query(sock, f"{name}.bench.svc.cluster.{cluster}") == 0:
        if time.monotonic() - start > 10:
            sys.exit("no answer within 10 s")
        time.sleep(0.002)
    results.append((time.monotonic() - start) * 1000)
    time.sleep(0.2)
results.sort()
print(f"{results[len(results) // 2]:.0f}")
