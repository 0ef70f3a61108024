#!/usr/bin/env python3
"""Docker runtime figures (release build, the machine's Docker engine, the
locally built test image shoal-test/busybox:1 already present):

- apply -> 10/10 Ready for a 10-replica container Deployment (busybox httpd,
  readiness httpGet periodSeconds 1): p50/p99 over RUNS runs;
- node RSS growth per running container pod (0 vs PODS pods).

Usage: bench/docker.py [RUNS] [PODS]   (build the image first: cargo test --test docker)
"""
import subprocess, sys, tempfile, time
from shoalbench import build, Node, pct, stop_all, wait

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
PODS = int(sys.argv[2]) if len(sys.argv) > 2 else 30


def deploy(name, n, probe=True):
    c = {"name": "httpd", "image": "shoal-test/busybox:1",
         "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
         "ports": [{"name": "http", "containerPort": 8080}]}
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": n, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]}}}}


def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])


def main():
    build()
    tmp = tempfile.mkdtemp()
    n = Node("d1", "127.0.92.1", tmp).start()
    try:
        time.sleep(4)
        ready = lambda name, k: n.get(f"/apis/apps/v1/namespaces/default/deployments/{name}")["status"]["readyReplicas"] == k
        times = []
        for r in range(RUNS):
            t0 = time.monotonic()
            n.req("POST", "/apis/apps/v1/namespaces/default/deployments", deploy(f"c{r}", 10))
            wait(lambda: ready(f"c{r}", 10), timeout=120, step=0.02)
            times.append((time.monotonic() - t0) * 1000)
            n.req("DELETE", f"/apis/apps/v1/namespaces/default/deployments/c{r}")
            wait(lambda: not n.get("/api/v1/namespaces/default/pods")["items"], timeout=120, step=0.2)
        print(f"apply -> 10/10 container replicas Ready (ms, n={RUNS}, image present, readiness httpGet period 1 s): "
              f"p50={pct(times,50):.0f} p99={pct(times,99):.0f} min={min(times):.0f} max={max(times):.0f}")
        time.sleep(3)
        before = rss(n.proc.pid)
        n.req("POST", "/apis/apps/v1/namespaces/default/deployments", deploy("many", PODS, probe=False))
        wait(lambda: ready("many", PODS), timeout=300, step=0.2)
        time.sleep(5)
        after = rss(n.proc.pid)
        print(f"node RSS: {before} KiB idle, {after} KiB with {PODS} container pods -> {(after - before) / PODS:.0f} KiB per container pod")
        n.req("DELETE", "/apis/apps/v1/namespaces/default/deployments/many")
        wait(lambda: not n.get("/api/v1/namespaces/default/pods")["items"], timeout=120, step=0.2)
    finally:
        stop_all([n])


if __name__ == "__main__":
    main()
