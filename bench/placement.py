#!/usr/bin/env python3
"""kill -9 -> all affected replicas Ready elsewhere (process workload).

5-node loopback cluster (release, defaults), a 10-replica Deployment of
python3 HTTP servers with a tcpSocket readiness probe (periodSeconds 1).
Each trial kills a node that runs replicas, measures until the Deployment has
10 Ready replicas and none on the dead node (as another node's API reports),
then restarts the node and waits for the rebalance.

Usage: bench/placement.py [TRIALS]
"""
import sys, tempfile, time
from shoalbench import build, cluster, pct, stop_all, wait

TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 10

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "command": ["python3", "-m", "http.server", "$(PORT)", "--bind", "$(SHOAL_NODE_IP)"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}}}


def owners(n):
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in n.get("/api/v1/namespaces/default/pods")["items"]
            if p["status"].get("phase") == "Running"}


def main():
    build()
    tmp = tempfile.mkdtemp()
    nodes, _ = cluster(5, tmp, "127.0.90.")
    try:
        time.sleep(4)  # settle time of the last joiners
        nodes[0].req("POST", "/apis/apps/v1/namespaces/default/deployments", DEPLOY)
        ready = lambda n: n.get("/apis/apps/v1/namespaces/default/deployments/web")["status"]["readyReplicas"] == 10
        wait(lambda: ready(nodes[0]), timeout=60)
        times, affected = [], []
        for t in range(TRIALS):
            o = owners(nodes[0])
            victim = [n for n in nodes[1:] if n.name in o.values()][t % 2]
            lost = sum(1 for v in o.values() if v == victim.name)
            obs = nodes[0]
            t0 = time.monotonic()
            victim.kill9()
            wait(lambda: ready(obs) and all(v != victim.name for v in owners(obs).values()) and len(owners(obs)) == 10, timeout=60, step=0.02)
            times.append((time.monotonic() - t0) * 1000)
            affected.append(lost)
            victim.start()
            wait(lambda: victim.name in owners(obs).values() and ready(obs) and not any(
                p["status"].get("reason") == "Terminating" for p in obs.get("/api/v1/namespaces/default/pods")["items"]), timeout=90)
        print(f"kill -9 -> all affected replicas Ready elsewhere (ms, n={TRIALS}, {min(affected)}-{max(affected)} replicas lost per kill): "
              f"p50={pct(times,50):.0f} p99={pct(times,99):.0f} min={min(times):.0f} max={max(times):.0f}")
    finally:
        stop_all(nodes)
        import subprocess
        subprocess.run(["pkill", "-f", "http.server"])


if __name__ == "__main__":
    main()
