#!/usr/bin/env python3
"""Desired-state figures on a 5-node loopback cluster (release build, defaults):

- apply on one node -> visible on all 5: p50/p99 over TRIALS;
- anti-entropy bytes per round when in sync;
- time for a node that missed OBJECTS objects to catch up after a restart;
- apply throughput through one node's API with write_replicas=2
  (sequential, and 8 concurrent clients).

Usage: bench/replication.py [TRIALS] [OBJECTS] [WRITES]
"""
import sys, tempfile, threading, time
from shoalbench import build, cluster, pct, stop_all, wait

TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
OBJECTS = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
WRITES = int(sys.argv[3]) if len(sys.argv) > 3 else 400


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def main():
    build()
    tmp = tempfile.mkdtemp()
    nodes, _ = cluster(5, tmp, "127.0.89.")
    try:
        # 1. apply -> visible everywhere.
        lat = []
        for t in range(TRIALS):
            t0 = time.monotonic()
            nodes[0].req("POST", "/api/v1/namespaces", ns(f"v{t}"))
            wait(lambda: all(n.req("GET", f"/api/v1/namespaces/v{t}") for n in nodes), step=0.002)
            lat.append((time.monotonic() - t0) * 1000)
        print(f"apply on n1 -> visible on all 5 (ms, n={TRIALS}): p50={pct(lat,50):.1f} p99={pct(lat,99):.1f} max={max(lat):.1f}")

        # 2. anti-entropy bytes per round, in sync.
        time.sleep(3)
        def totals():
            b = sum(n.metric("shoal_sync_bytes_sent_total") + n.metric("shoal_sync_bytes_received_total") for n in nodes)
            r = sum(n.metric("shoal_anti_entropy_rounds_total") for n in nodes)
            return b, r
        b0, r0 = totals(); time.sleep(30); b1, r1 = totals()
        print(f"anti-entropy when in sync: {r1-r0:.0f} rounds in 30 s over 5 nodes, {(b1-b0)/max(1,r1-r0):.0f} bytes per round (request+reply)")

        # 3. a node that missed OBJECTS objects.
        lag = nodes[4]
        lag.stop()
        batch = 500
        for i in range(0, OBJECTS, batch):
            docs = "".join(f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: m{j}}}\n" for j in range(i, min(OBJECTS, i + batch)))
            nodes[0].req("POST", "/shoal/v1/apply", {"files": [{"name": "bulk.yaml", "content": docs}]}, timeout=120)
        want = nodes[0].metric("shoal_state_entries")
        t0 = time.monotonic()
        lag.start()
        took = wait(lambda: lag.metric("shoal_state_entries") >= want, timeout=300, step=0.05) + 0
        took = time.monotonic() - t0
        print(f"node that missed {OBJECTS} objects: in sync {took:.2f} s after its restart (entries {want:.0f})")

        # 4. apply throughput through n1 with write_replicas = 2.
        t0 = time.monotonic()
        for i in range(WRITES):
            nodes[0].req("POST", "/api/v1/namespaces", ns(f"s{i}"))
        seq = WRITES / (time.monotonic() - t0)
        errors = []
        def worker(k):
            for i in range(WRITES // 8):
                try:
                    nodes[0].req("POST", "/api/v1/namespaces", ns(f"c{k}-{i}"))
                except Exception as e:
                    errors.append(str(e))
        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        conc = (WRITES // 8 * 8) / (time.monotonic() - t0)
        print(f"apply throughput via n1, write_replicas=2: sequential {seq:.0f} objects/s, 8 clients {conc:.0f} objects/s ({len(errors)} errors)")
    finally:
        stop_all(nodes)


if __name__ == "__main__":
    main()
