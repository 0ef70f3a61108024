#!/usr/bin/env python3
"""Service proxy figures (release build, loopback, wrk):

1. proxy overhead: one fast backend, wrk through the node port vs directly to
   the pod's host port (keep-alive): throughput ratio, added latency p50/p99,
   and the CPU time the node, the backend and wrk spend per request;
2. ten backends (BACKEND_MS), one 10x slower: p99 through a p2c node and a
   round-robin node, next to the all-healthy p99 (new connection per request,
   so every request is balanced);
3. recovery after a backend's node is killed (node and its pods, kill -9):
   failed requests and the time until requests succeed again.

Usage: bench/proxy.py [SECONDS] [BACKEND_MS]  (healthy backends answer in BACKEND_MS, the slow one in 10x)
"""
import json, os, re, socket, subprocess, sys, tempfile, threading, time
import shoalbench
from shoalbench import BIN, ROOT, Node, build, stop_all, wait

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
BASE_MS = sys.argv[2] if len(sys.argv) > 2 else "2"
BACKEND = os.path.join(ROOT, "target", "release", "examples", "bench_backend")


def deploy(name, replicas, env):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "command": [BACKEND], "env": [{"name": k, "value": v} for k, v in env.items()],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}}}


def service(name, np):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http", "nodePort": np}]}}


def wrk(url, conns=32, close=False):
    return shoalbench.wrk(url, SECS, conns, close)


def cpu_secs(pid):
    """CPU time (user + system) of a process so far, in seconds."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def costed(url, node, backend):
    """Runs wrk on `url`: its figures, and the CPU microseconds per request
    spent by the node (the proxy), the backend and wrk itself (a child,
    counted once it has exited)."""
    def now():
        t = os.times()
        return (cpu_secs(node), cpu_secs(backend), t.children_user + t.children_system)
    before = now()
    r = wrk(url)
    after = now()
    return r, [(b - a) / (r[0] * SECS) * 1e6 for a, b in zip(before, after)]


def ready(n, name, count):
    wait(lambda: n.get(f"/apis/apps/v1/namespaces/default/deployments/{name}")["status"]["readyReplicas"] == count, timeout=60)
    wait(lambda: len(n.get(f"/api/v1/namespaces/default/services/{name}")["status"]["ports"][0]["endpoints"]) == count, timeout=30)


def main():
    build()
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "bench_backend"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    base = "127.0.91."
    n1 = Node("n1", base + "1", tmp).start()
    token = subprocess.run([BIN, "token", "--server", f"http://{base}1:7420", "--data-dir", n1.dir + "/data"], capture_output=True, text=True, check=True).stdout.strip()
    n2 = Node("n2", base + "2", tmp, base + "1", token, config='[proxy]\nbalancer = "round-robin"\n').start()
    n3 = Node("n3", base + "3", tmp, base + "1", token).start()
    nodes = [n1, n2, n3]
    try:
        wait(lambda: all(list(x.states().values()).count("Ready") == 3 for x in nodes))
        time.sleep(4)
        # 1. Overhead.
        n1.req("POST", "/apis/apps/v1/namespaces/default/deployments", deploy("one", 1, {}))
        n1.req("POST", "/api/v1/namespaces/default/services", service("one", 30100))
        ready(n1, "one", 1)
        ep = n1.get("/api/v1/namespaces/default/services/one")["status"]["ports"][0]["endpoints"][0]
        backend = int(subprocess.run(["pgrep", "-f", BACKEND], capture_output=True, text=True).stdout.split()[0])
        d, dc = costed(f"http://{ep['ip']}:{ep['port']}/", n1.proc.pid, backend)
        p, pc = costed(f"http://{base}1:30100/", n1.proc.pid, backend)
        print(f"proxy overhead, 1 backend, keep-alive, wrk -t2 -c32 {SECS}s: direct {d[0]:.0f} req/s p50 {d[1]:.3f} ms p99 {d[2]:.3f} ms; "
              f"via proxy {p[0]:.0f} req/s p50 {p[1]:.3f} ms p99 {p[2]:.3f} ms; throughput ratio {p[0]/d[0]:.2f}, "
              f"added latency p50 +{p[1]-d[1]:.3f} ms p99 +{p[2]-d[2]:.3f} ms")
        print("CPU per request, us (node / backend / wrk): direct " + " / ".join(f"{x:.2f}" for x in dc)
              + "; via proxy " + " / ".join(f"{x:.2f}" for x in pc))
        n1.req("DELETE", "/apis/apps/v1/namespaces/default/deployments/one")
        # 2. One slow backend of ten.
        for label, env in [("all healthy", {"DELAY_MS": BASE_MS}), ("one 10x slower", {"DELAY_MS": BASE_MS, "SLOW_POD": "-0", "SLOW_DELAY_MS": str(10 * int(BASE_MS))})]:
            try:
                n1.req("DELETE", "/apis/apps/v1/namespaces/default/deployments/ten")
                wait(lambda: not [x for x in n1.get("/api/v1/namespaces/default/pods")["items"] if x["metadata"]["name"].startswith("ten-")], timeout=30)
            except Exception:
                pass
            n1.req("POST", "/apis/apps/v1/namespaces/default/deployments", deploy("ten", 10, env))
            if label == "all healthy":
                n1.req("POST", "/api/v1/namespaces/default/services", service("ten", 30200))
            for n in nodes:
                ready(n, "ten", 10)
            def share(n):
                txt = n.get("/metrics", raw=True).decode()
                per = {}
                for l in txt.splitlines():
                    if l.startswith("shoal_proxy_backend_connections_total{") and 'service="default/ten"' in l:
                        pod = l.split('pod="')[1].split('"')[0]
                        per[pod] = float(l.split()[-1])
                return per
            s1a = share(n1); pp = wrk(f"http://{base}1:30200/", conns=16, close=True); s1b = share(n1)
            s2a = share(n2); rr = wrk(f"http://{base}2:30200/", conns=16, close=True); s2b = share(n2)
            def slow_share(a, b):
                # Replica 0 of the Deployment (named ten-<template hash>-0).
                slow = lambda m: sum(v for k, v in m.items() if re.fullmatch(r"default/ten-[0-9a-f]{10}-0", k))
                tot = sum(b.values()) - sum(a.values())
                return (slow(b) - slow(a)) / max(1, tot)
            print(f"ten backends, {label}, new connection per request, wrk -c16: p2c p99 {pp[2]:.2f} ms ({pp[0]:.0f} req/s, ten-0 got {slow_share(s1a, s1b)*100:.1f}%); "
                  f"round-robin p99 {rr[2]:.2f} ms ({rr[0]:.0f} req/s, ten-0 got {slow_share(s2a, s2b)*100:.1f}%)")
        # 3. Recovery after a backend's node dies.
        owners = {x["metadata"]["name"]: x["spec"]["nodeName"] for x in n1.get("/api/v1/namespaces/default/pods")["items"] if x["metadata"]["name"].startswith("ten-")}
        pids = [int(x["status"]["containerStatuses"][0]["containerID"][6:]) for x in n3.get("/api/v1/namespaces/default/pods")["items"]
                if x["spec"].get("nodeName") == "n3" and x["status"]["containerStatuses"][0].get("containerID", "").startswith("pid://")]
        log, stop = [], [False]
        def client():
            while not stop[0]:
                t = time.monotonic()
                try:
                    s = socket.create_connection((base + "1", 30200), timeout=2)
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    ok = s.recv(100).startswith(b"HTTP/1.1 200")
                    s.close()
                except Exception:
                    ok = False
                log.append((t, ok))
        th = threading.Thread(target=client); th.start()
        time.sleep(2)
        t_kill = time.monotonic()
        n3.kill9()
        for pid in pids:
            try: os.kill(pid, 9)
            except ProcessLookupError: pass
        wait(lambda: len(n1.get("/api/v1/namespaces/default/services/ten")["status"]["ports"][0]["endpoints"]) == 10
             and all(e["node"] != "n3" for e in n1.get("/api/v1/namespaces/default/services/ten")["status"]["ports"][0]["endpoints"]), timeout=60)
        gone = time.monotonic() - t_kill
        time.sleep(2)
        stop[0] = True; th.join()
        after = [(t - t_kill, ok) for t, ok in log if t >= t_kill]
        fails = [t for t, ok in after if not ok]
        print(f"backend node killed ({len(pids)} of 10 backends): {len(after)} requests after the kill, {len(fails)} failed"
              + (f" (between +{min(fails)*1000:.0f} and +{max(fails)*1000:.0f} ms)" if fails else "")
              + f"; endpoints back to 10 Ready (none on the dead node) after {gone:.2f} s")
    finally:
        stop_all(nodes)
        subprocess.run(["pkill", "-f", "bench_backend"])


if __name__ == "__main__":
    main()
