#!/usr/bin/env python3
"""Rollouts and maintenance on 3 real nodes (release build, loopback):

- a rolling update of 12 replicas with maxUnavailable 0 and with the
  defaults, a poller counting Ready pods through the API every 100 ms:
  the fewest Ready and the rollout's duration; the same for 48 replicas;
- a drain of a node holding 10 replicas (30 on 3 nodes), with the poller;
- replicas of a workload moved when an unrelated workload is applied.

Usage: python3 bench/rollout.py
"""
import json, os, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shoalbench import BIN, ROOT, build, cluster, stop_all, wait  # noqa: E402

FAST = """
[agent]
restart_backoff_initial = "200ms"
[membership]
settle_time = "1s"
"""

PY = ("import http.server,os\\nclass H(http.server.BaseHTTPRequestHandler):\\n def do_GET(s):\\n"
      "  s.send_response(200);s.end_headers();s.wfile.write(b'ok')\\n def log_message(s,*a): pass\\n"
      "http.server.ThreadingHTTPServer((os.environ['SHOAL_NODE_IP'],int(os.environ['PORT'])),H).serve_forever()")


def deployment(name, replicas, version, strategy=""):
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
{strategy}  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          command: ["python3", "-c", "{PY}"]
          env: [{{name: VERSION, value: "{version}"}}]
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
"""


def cli(node, *args, stdin=None):
    env = dict(os.environ, SHOAL_SERVER=f"http://{node.ip}:7420", SHOAL_DATA_DIR=node.dir + "/data")
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, env=env)


def ready(node, name):
    items = node.get("/api/v1/namespaces/default/pods")["items"]
    n = 0
    for p in items:
        owner = (p["metadata"].get("ownerReferences") or [{}])[0].get("name", "")
        if owner.rsplit("-", 1)[0] != name:
            continue
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])):
            n += 1
    return n


class Poller:
    def __init__(self, node, name):
        self.node, self.name, self.seen, self.stop = node, name, [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            t0 = time.monotonic()
            try:
                self.seen.append(ready(self.node, self.name))
            except Exception:
                pass
            time.sleep(max(0, 0.1 - (time.monotonic() - t0)))

    def finish(self):
        self.stop = True
        self.t.join()
        return min(self.seen), len(self.seen)


def rolled(node, name):
    return cli(node, "rollout", "status", "deployment", name, "--timeout", "300s").returncode == 0


def roll(nodes, name, replicas, strategy, label):
    n1, n2 = nodes[0], nodes[1]
    cli(n1, "apply", "-f", "-", stdin=deployment(name, replicas, 1, strategy))
    assert rolled(n1, name)
    wait(lambda: ready(n2, name) == replicas, timeout=120)
    poll = Poller(n2, name)
    time.sleep(0.5)
    t0 = time.monotonic()
    cli(n1, "apply", "-f", "-", stdin=deployment(name, replicas, 2, strategy))
    assert rolled(n1, name)
    took = time.monotonic() - t0
    time.sleep(1)
    low, samples = poll.finish()
    print(f"{label}: {replicas} replicas on 3 nodes: fewest Ready {low} of {replicas} over {samples} samples, rollout {took:.1f} s")
    cli(n1, "delete", "deployment", name)
    wait(lambda: ready(n2, name) == 0, timeout=60)


def main():
    build()
    tmp = tempfile.mkdtemp(prefix="shoal-rollout-")
    base = "127.0.77."
    nodes, _ = cluster(3, tmp, base, config=FAST)
    try:
        roll(nodes, "a", 12, "  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n", "maxSurge 1, maxUnavailable 0")
        roll(nodes, "b", 12, "", "defaults (25%/25%)")
        roll(nodes, "c", 48, "", "defaults (25%/25%)")
        # Drain: 30 replicas, 10 a node.
        n1, n2, n3 = nodes
        cli(n1, "apply", "-f", "-", stdin=deployment("d", 30, 1))
        assert rolled(n1, "d")
        on = lambda: len(n1.get("/api/v1/nodes/n3")["status"]["shoal"]["pods"])
        held = on()
        poll = Poller(n2, "d")
        time.sleep(0.5)
        t0 = time.monotonic()
        r = cli(n1, "drain", "n3", "--timeout", "300s")
        took = time.monotonic() - t0
        low, samples = poll.finish()
        assert r.returncode == 0, r.stderr
        print(f"drain of n3 holding {held} of 30 replicas: {took:.1f} s, fewest Ready {low} of 30 over {samples} samples")
        cli(n1, "uncordon", "n3")
        # Unrelated applies: does any replica of d move?
        time.sleep(5)
        assert rolled(n1, "d")
        owners = lambda: {p["metadata"]["name"]: p["spec"].get("nodeName") for p in n1.get("/api/v1/namespaces/default/pods")["items"]
                          if (p["metadata"].get("ownerReferences") or [{}])[0].get("name", "").startswith("d-")}
        wait(lambda: len(owners()) == 30 and None not in owners().values(), timeout=60)
        time.sleep(3)
        before = owners()
        for i in range(3):
            cli(n1, "apply", "-f", "-", stdin=deployment(f"other{i}", 5, 1))
        for i in range(3):
            assert rolled(n1, f"other{i}")
        after = owners()
        moved = sum(1 for k, v in before.items() if after.get(k) != v)
        print(f"replicas of a 30-replica deployment moved by 3 unrelated applies (15 replicas): {moved}")
    finally:
        stop_all(nodes)


if __name__ == "__main__":
    main()
