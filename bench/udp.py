#!/usr/bin/env python3
"""UDP service proxy figures (release build, loopback, dnsperf from Debian's
`dnsperf`, dnsmasq from `dnsmasq-base`):

1. one dnsmasq replica as a process pod behind a `protocol: UDP` service;
   dnsperf straight to the pod's host port, then through a node port, same
   settings, one after the other: queries per second, and average latency;
2. the same through the node port with one flow per query (dnsperf -c 64:
   64 source ports, so 64 flows balanced over 3 replicas).

Usage: bench/udp.py [SECONDS]
"""
import os, re, subprocess, sys, tempfile
from shoalbench import BIN, build, cluster, stop_all, wait

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def deploy(replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dns"}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": "dns"}}, "template": {
            "metadata": {"labels": {"app": "dns"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "dnsmasq", "command": ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                                               "--no-resolv", "--no-hosts", "--pid-file=", "--bind-interfaces",
                                               "--listen-address=$(SHOAL_NODE_IP)", "--port=$(PORT)",
                                               "--txt-record=who.lab,$(SHOAL_POD_NAME)", "--address=/web.lab/10.1.2.3"],
                "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                          {"name": "dns-tcp", "containerPort": 53}],
                "readinessProbe": {"tcpSocket": {"port": "dns-tcp"}, "periodSeconds": 1}}]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
           "spec": {"selector": {"app": "dns"}, "ports": [{"name": "dns", "port": 53, "targetPort": "dns",
                                                           "protocol": "UDP", "nodePort": 30053}]}}


def dnsperf(ip, port, qfile, clients=1, secs=None):
    out = subprocess.run(["dnsperf", "-s", ip, "-p", str(port), "-d", qfile, "-l", str(secs or SECS), "-c", str(clients),
                          "-q", "100", "-t", "1"], capture_output=True, text=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    avg = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1)) * 1000
    return qps, lost, avg


def ready(n, count):
    wait(lambda: n.get("/apis/apps/v1/namespaces/default/deployments/dns")["status"].get("readyReplicas") == count, timeout=60)
    wait(lambda: len(n.get("/api/v1/namespaces/default/services/dns")["status"]["ports"][0]["endpoints"]) == count, timeout=30)


def main():
    build()
    tmp = tempfile.mkdtemp()
    base = "127.0.93."
    nodes, _ = cluster(3, tmp, base)
    n1 = nodes[0]
    qfile = os.path.join(tmp, "queries")
    with open(qfile, "w") as f:
        f.write("who.lab TXT\nweb.lab A\n" * 50)
    try:
        n1.req("POST", "/apis/apps/v1/namespaces/default/deployments", deploy(1))
        n1.req("POST", "/api/v1/namespaces/default/services", SERVICE)
        ready(n1, 1)
        ep = n1.get("/api/v1/namespaces/default/services/dns")["status"]["ports"][0]["endpoints"][0]
        # A first short run warms both paths up (the very first queries to a
        # fresh dnsmasq were lost in every try), then the measured ones.
        dnsperf(ep["ip"], ep["port"], qfile, secs=2)
        dnsperf(base + "1", 30053, qfile, secs=2)
        d = dnsperf(ep["ip"], ep["port"], qfile)
        p = dnsperf(base + "1", 30053, qfile)
        print(f"UDP, 1 dnsmasq replica, dnsperf -c 1 -q 100 -t 1 for {SECS} s: direct {d[0]:.0f} q/s (avg {d[2]:.3f} ms, "
              f"{d[1]} lost); via the node port {p[0]:.0f} q/s (avg {p[2]:.3f} ms, {p[1]} lost); "
              f"ratio {p[0] / d[0]:.2f}, added avg latency +{p[2] - d[2]:.3f} ms")
        n1.req("PUT", "/apis/apps/v1/namespaces/default/deployments/dns", deploy(3))
        ready(n1, 3)
        m = dnsperf(base + "1", 30053, qfile, clients=64)
        print(f"UDP, 3 replicas, dnsperf -c 64 (64 flows) via the node port: {m[0]:.0f} q/s (avg {m[2]:.3f} ms, {m[1]} lost)")
    finally:
        stop_all(nodes)


if __name__ == "__main__":
    main()
