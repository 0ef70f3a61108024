#!/usr/bin/env python3
"""The map/reduce example (configs/examples/mapreduce.yaml) on 1, 2 and 3
real nodes (loopback): how long the Indexed Job of 6 parts takes from apply
to Complete, the speed-up over 1 node, and the reduce (the sum of the 6
parts' logs, read through node 1's API) checked against a sieve.

Every node offers 1 CPU (`[capacity] cpu = "1"`) and every part asks for 1,
so a node runs one part at a time, as a 1-core machine would. All nodes
share this machine's cores: the speed-up cannot pass the number of cores
(`nproc`), whatever the number of nodes.

Usage: python3 bench/mapreduce.py      (SHOAL_BIN=target/debug/shoal to skip the release build)
"""
import os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shoalbench import BIN, ROOT, build, cluster, stop_all, wait  # noqa: E402

EXAMPLE = os.path.join(ROOT, "configs", "examples", "mapreduce.yaml")
CONFIG = """
[membership]
settle_time = "1s"
[capacity]
cpu = "1"
"""
PARTS = 6


def sieve(n):
    s = bytearray([1]) * n
    s[0] = s[1] = 0
    for p in range(2, int(n ** 0.5) + 1):
        if s[p]:
            s[p * p::p] = bytearray(len(range(p * p, n, p)))
    return sum(s)


def complete(node):
    j = node.get("/apis/batch/v1/namespaces/default/jobs/primes")
    return any(c["type"] == "Complete" and c["status"] == "True" for c in j["status"].get("conditions", []))


def run(n, base):
    tmp = tempfile.mkdtemp(prefix=f"shoal-mapreduce-{n}-")
    nodes, _ = cluster(n, tmp, base, CONFIG)
    try:
        env = dict(os.environ, SHOAL_SERVER=f"http://{nodes[0].ip}:7420", SHOAL_DATA_DIR=nodes[0].dir + "/data")
        t0 = time.monotonic()
        subprocess.run([BIN, "apply", "-f", EXAMPLE], env=env, check=True, capture_output=True)
        wait(lambda: complete(nodes[0]), timeout=600, step=0.05)
        took = time.monotonic() - t0
        pods = nodes[0].get("/api/v1/namespaces/default/pods")["items"]
        ran_on = sorted({p["spec"].get("nodeName") for p in pods if p["metadata"]["name"].startswith("primes-")})
        total = sum(int(nodes[0].get(f"/api/v1/namespaces/default/pods/primes-{i}/log", raw=True).decode())
                    for i in range(PARTS))
        return took, total, ran_on
    finally:
        stop_all(nodes)


def main():
    build()
    want = sieve(6_000_000)
    print(f"cores on this machine: {os.cpu_count()}; expected reduce: {want}")
    print(f"{'nodes':>5} {'seconds':>8} {'speed-up':>8}  ran on         reduce")
    first = None
    for n, base in [(1, "127.0.78."), (2, "127.0.79."), (3, "127.0.80.")]:
        took, total, ran_on = run(n, base)
        first = first or took
        ok = "ok" if total == want else f"WRONG (want {want})"
        print(f"{n:>5} {took:>8.1f} {first / took:>7.2f}x  {','.join(ran_on):<14} {total} {ok}")


if __name__ == "__main__":
    main()
