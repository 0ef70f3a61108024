#!/usr/bin/env python3
"""The kernel path of `externalTrafficPolicy: Local` against the proxy
(release build, root: a network namespace of its own for the external
client, as tests/traffic_policy.rs):

- a "LAN client" namespace on a veth pair whose host end holds two nodes'
  addresses (198.18.215.0/24, RFC 2544's benchmarking range);
- n1 hands external clients of Local services to the kernel (nftables DNAT,
  the default); n2 has `proxy.kernel_local = false`, so the proxy relays them;
- one bench_backend replica per node (a DaemonSet), a Local service on it;
- wrk from the client namespace, keep-alive: straight to each node's replica,
  then through each node's node port. One run, side by side.

Also a check of what each backend sees as the client address.

Usage: sudo bench/local_nat.py [SECONDS]
"""
import os, subprocess, sys, tempfile, time
import shoalbench
from shoalbench import BIN, ROOT, Node, build, stop_all, wait

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
NS, HOST_END, NS_END = "shoal-natb", "shoal-natb0", "shoal-natb1"
NET = "198.18.215."
CLIENT = NET + "2"


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


def lan_up(ips):
    lan_down(ips)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_END, "type", "veth", "peer", "name", NS_END)
    sh("ip", "link", "set", NS_END, "netns", NS)
    for i, a in enumerate(ips):
        sh("ip", "addr", "add", f"{a}/{24 if i == 0 else 32}", "dev", HOST_END)
    sh("ip", "link", "set", HOST_END, "up")
    sh("ip", "-n", NS, "addr", "add", f"{CLIENT}/24", "dev", NS_END)
    sh("ip", "-n", NS, "link", "set", NS_END, "up")
    sh("ip", "-n", NS, "link", "set", "lo", "up")


def lan_down(ips):
    sh("ip", "link", "del", HOST_END, check=False)
    sh("ip", "netns", "del", NS, check=False)
    for a in ips:
        sh("nft", "delete", "table", "inet", "shoal_" + a.replace(".", "_"), check=False)


def wrk(url):
    return shoalbench.wrk(url, SECS, prefix=("ip", "netns", "exec", NS))


def seen_client(url):
    """The client address a replica reports (tests' PY_SERVER is not used
    here: bench_backend answers `ok`), so ask the kernel: the source address
    of the backend's established connections while curl holds one open."""
    py = f"import socket,time\ns=socket.create_connection(('{url[0]}',{url[1]}))\ns.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\ns.recv(100)\ntime.sleep(1)\n"
    p = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", py])
    time.sleep(0.5)
    out = sh("ss", "-Htn", "state", "established").stdout
    p.wait()
    return out


def main():
    if os.geteuid() != 0:
        sys.exit("needs root (a network namespace, a veth pair, nftables)")
    build()
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "bench_backend"], cwd=ROOT, check=True)
    backend = os.path.join(ROOT, "target", "release", "examples", "bench_backend")
    ips = [NET + "1", NET + "3"]
    lan_up(ips)
    tmp = tempfile.mkdtemp()
    # The API on the node IP (not loopback), in plain HTTP as the other benches.
    api = lambda ip: ["--api-plain-http", "any", "--api-addr", f"{ip}:7420"]
    n1 = Node("n1", ips[0], tmp, args=api(ips[0])).start()
    token = sh(BIN, "token", "--server", f"http://{ips[0]}:7420", "--data-dir", n1.dir + "/data").stdout.strip()
    n2 = Node("n2", ips[1], tmp, ips[0], token, config="[proxy]\nkernel_local = false\n", args=api(ips[1])).start()
    nodes = [n1, n2]
    try:
        wait(lambda: all(list(x.states().values()).count("Ready") == 2 for x in nodes), timeout=60)
        wait(lambda: all(n["spec"].get("unschedulable") is False for n in n1.get("/api/v1/nodes")["items"]), timeout=60)
        n1.req("POST", "/apis/apps/v1/namespaces/default/daemonsets", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "one"}, "spec": {
                "selector": {"matchLabels": {"app": "one"}}, "template": {"metadata": {"labels": {"app": "one"}}, "spec": {
                    "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "command": [backend],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}}})
        n1.req("POST", "/api/v1/namespaces/default/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"},
            "spec": {"selector": {"app": "one"}, "externalTrafficPolicy": "Local",
                     "ports": [{"port": 80, "targetPort": "http", "nodePort": 30300}]}})
        eps = lambda: n1.get("/api/v1/namespaces/default/services/one")["status"]["ports"][0]["endpoints"]
        wait(lambda: len(eps()) == 2, timeout=60)
        time.sleep(2)  # every node's proxy has the endpoints (and n1 its table)
        by_node = {e["node"]: e for e in eps()}
        for n, how in [(n1, "kernel (nftables DNAT)"), (n2, "proxy (kernel_local = false)")]:
            e = by_node[n.name]
            d = wrk(f"http://{e['ip']}:{e['port']}/")
            p = wrk(f"http://{n.ip}:30300/")
            print(f"{n.name}, {how}, 1 local replica, keep-alive, wrk -t2 -c32 {SECS}s from another namespace: "
                  f"direct {d[0]:.0f} req/s p50 {d[1]:.3f} ms p99 {d[2]:.3f} ms; via node port {p[0]:.0f} req/s "
                  f"p50 {p[1]:.3f} ms p99 {p[2]:.3f} ms; throughput ratio {p[0]/d[0]:.2f}, "
                  f"added latency p50 {p[1]-d[1]:+.3f} ms p99 {p[2]-d[2]:+.3f} ms")
        for n in nodes:
            e = by_node[n.name]
            out = seen_client((n.ip, 30300))
            peers = sorted({l.split()[-1].rsplit(":", 1)[0] for l in out.splitlines()
                            if l.split()[2].endswith(f":{e['port']}")})
            print(f"{n.name}: its replica's connections come from {peers}")
    finally:
        stop_all(nodes)
        subprocess.run(["pkill", "-f", "bench_backend"])
        lan_down(ips)


if __name__ == "__main__":
    main()
