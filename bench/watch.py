#!/usr/bin/env python3
"""Watch figures (release build, loopback, 3 nodes):

1. watch delay: a ConfigMap created on n1 (the write acknowledged), seen as
   an ADDED event by a watch on n1 (same node) and on n3 (replicated), with
   OBJECTS other ConfigMaps in the cache: p50/p99 over SAMPLES writes;
2. list time: GET of every ConfigMap (OBJECTS of them) on n3, p50/p99.

Usage: bench/watch.py [OBJECTS] [SAMPLES]
"""
import http.client, json, os, sys, tempfile, threading, time
from shoalbench import build, cluster, pct, stop_all

OBJECTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
SAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def cm(name):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


class Watcher(threading.Thread):
    """Streams a watch from `rv` and records when each ADDED name arrives."""

    def __init__(self, node, rv):
        super().__init__(daemon=True)
        self.node, self.rv, self.seen = node, rv, {}
        self.open = threading.Event()

    def run(self):
        c = http.client.HTTPConnection(self.node.ip, 7420, timeout=600)
        c.request("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={self.rv}",
                  headers={"Authorization": f"Bearer {self.node.api_token}"})
        r = c.getresponse()
        self.open.set()
        for line in r:
            ev = json.loads(line)
            if ev["type"] == "ADDED":
                self.seen[ev["object"]["metadata"]["name"]] = time.monotonic()


def main():
    build()
    with tempfile.TemporaryDirectory() as tmp:
        nodes, _ = cluster(3, tmp, "127.0.77.")
        try:
            n1, n3 = nodes[0], nodes[2]
            # The background objects, in batches through /shoal/v1/apply.
            docs = [cm(f"bg-{i}") for i in range(OBJECTS)]
            for i in range(0, len(docs), 200):
                body = "\n---\n".join(json.dumps(d) for d in docs[i:i + 200])
                n1.req("POST", "/shoal/v1/apply", {"files": [{"name": "bg.yaml", "content": body}]})
            deadline = time.time() + 60
            while len(n3.get("/api/v1/namespaces/default/configmaps")["items"]) < OBJECTS:
                if time.time() > deadline:
                    raise RuntimeError("background objects did not replicate")
                time.sleep(0.1)
            lists = []
            for _ in range(20):
                t = time.monotonic()
                out = n3.get("/api/v1/namespaces/default/configmaps")
                lists.append(time.monotonic() - t)
            watchers = {}
            for n in (n1, n3):
                w = Watcher(n, out["metadata"]["resourceVersion"] if n is n3 else n.get("/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"])
                w.start()
                watchers[n.name] = w
            for w in watchers.values():
                if not w.open.wait(10):
                    raise RuntimeError("a watch did not open")
            acked = {}
            for i in range(SAMPLES):
                name = f"lat-{i}"
                n1.req("POST", "/api/v1/namespaces/default/configmaps", cm(name))
                acked[name] = time.monotonic()
                time.sleep(0.05)
            deadline = time.time() + 30
            while any(len(w.seen) < SAMPLES for w in watchers.values()) and time.time() < deadline:
                time.sleep(0.05)
            print(f"{OBJECTS} ConfigMaps in the cache, {SAMPLES} writes on n1")
            for name, w in watchers.items():
                d = [(w.seen[k] - t) * 1000 for k, t in acked.items() if k in w.seen]
                missing = SAMPLES - len(d)
                print(f"watch on {name}: ack -> ADDED p50 {pct(d, 50):.1f} ms, p99 {pct(d, 99):.1f} ms, "
                      f"max {max(d):.1f} ms, missed {missing}")
            ms = [x * 1000 for x in lists]
            print(f"list of {OBJECTS} ConfigMaps on n3: p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms")
        finally:
            stop_all(nodes)


if __name__ == "__main__":
    main()
