#!/usr/bin/env python3
"""Membership figures on a 5-node loopback cluster (release build, default config).

- kill -9 -> Dead on all 4 peers: p50/p99/max over TRIALS trials;
- join -> Ready on all peers: p50/p99 over TRIALS fresh nodes;
- gossip bytes per second per node, idle (from /metrics);
- false deaths while one node is SIGSTOPped for 1 s every 10 s (STALL_SECONDS).

Usage: bench/membership.py [TRIALS] [STALL_SECONDS]
"""
import json, os, signal, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "shoal")
TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
STALL = int(sys.argv[2]) if len(sys.argv) > 2 else 300
BASE = "127.0.88."
# Optional overrides, e.g. PHI=12 GOSSIP=200ms MEMBERSHIP=swim bench/membership.py
PHI = os.environ.get("PHI")
GOSSIP = os.environ.get("GOSSIP")
MEMBERSHIP = os.environ.get("MEMBERSHIP")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


class Node:
    def __init__(self, name, ip, tmp, join=None, token=None):
        self.name, self.ip, self.dir = name, ip, os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.join, self.token, self.proc = join, token, None

    def start(self):
        args = [BIN, "up", "--data-dir", self.dir + "/data", "--node-ip", self.ip, "--name", self.name]
        if MEMBERSHIP:
            args += ["--membership", MEMBERSHIP]
        if PHI or GOSSIP:
            with open(self.dir + "/node.toml", "w") as f:
                f.write("[membership]\n")
                if PHI:
                    f.write(f"phi_threshold = {PHI}\n")
                if GOSSIP:
                    f.write(f'gossip_interval = "{GOSSIP}"\n')
            args += ["--config", self.dir + "/node.toml"]
        if self.join and not os.path.exists(self.dir + "/data/identity.json"):
            args += ["--join", self.join + ":7421", "--token", self.token]
        self.log = open(self.dir + "/node.log", "a")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self.started = time.monotonic()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.api_token = open(self.dir + "/data/api-token").read().strip()
                self.get("/healthz", raw=True)
                return self
            except Exception:
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start")

    def get(self, path, raw=False):
        req = urllib.request.Request(f"http://{self.ip}:7420{path}", headers={"Authorization": f"Bearer {self.api_token}"})
        body = urllib.request.urlopen(req, timeout=2).read()
        return body if raw else json.loads(body)

    def states(self):
        return {n["metadata"]["name"]: n["status"]["state"] for n in self.get("/api/v1/nodes")["items"]}

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None


def wait(pred, timeout=30, step=0.01):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(step)
    raise RuntimeError("timeout")


def main():
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    nodes = [Node("n1", BASE + "1", tmp).start()]
    token = subprocess.run([BIN, "token", "--server", f"http://{BASE}1:7420", "--data-dir", nodes[0].dir + "/data"], capture_output=True, text=True, check=True).stdout.strip()
    for i in range(2, 6):
        nodes.append(Node(f"n{i}", BASE + str(i), tmp, BASE + "1", token).start())
    try:
        wait(lambda: all(list(n.states().values()).count("Ready") == 5 for n in nodes))
        print(f"# 5 nodes Ready (membership {MEMBERSHIP or 'chitchat'}, gossip_interval {GOSSIP or 'default'}, phi_threshold {PHI or 'default'})")
        def sent():
            out = []
            for n in nodes:
                txt = n.get("/metrics", raw=True).decode()
                out.append(sum(float(l.split()[-1]) for l in txt.splitlines() if l.startswith("shoal_gossip_bytes_sent_total")))
            return out
        time.sleep(3)
        a = sent(); time.sleep(20); b = sent()
        rates = [(y - x) / 20 for x, y in zip(a, b)]
        print(f"gossip bytes sent per node per second, idle, fresh 5-node cluster: mean={sum(rates)/len(rates):.0f} min={min(rates):.0f} max={max(rates):.0f}")

        # kill -9 -> Dead everywhere.
        det = []
        for t in range(TRIALS):
            victim = nodes[1 + t % 4]
            others = [n for n in nodes if n is not victim]
            time.sleep(2)  # let failure-detector windows fill between trials
            t0 = time.monotonic()
            victim.kill9()
            wait(lambda: all(o.states().get(victim.name) == "Dead" for o in others), step=0.005)
            det.append(time.monotonic() - t0)
            victim.start()
            wait(lambda: all(o.states().get(victim.name) == "Ready" for o in nodes))
        ms = [d * 1000 for d in det]
        print(f"kill -9 -> Dead on all 4 peers (ms, n={len(ms)}): p50={pct(ms,50):.0f} p99={pct(ms,99):.0f} max={max(ms):.0f} (each: {[round(m) for m in ms]})")

        # join -> Ready on all peers (fresh nodes).
        joins = []
        for t in range(TRIALS):
            j = Node(f"j{t}", BASE + str(20 + t), tmp, BASE + "1", token)
            t0 = time.monotonic()
            j.start()
            wait(lambda: all(o.states().get(j.name) == "Ready" for o in nodes), step=0.005)
            joins.append((time.monotonic() - t0) * 1000)
            j.proc.send_signal(signal.SIGTERM)
            j.proc.wait()
        print(f"start of a new node -> Ready on all 5 (ms, n={len(joins)}): p50={pct(joins,50):.0f} p99={pct(joins,99):.0f} max={max(joins):.0f}")
        # Let the joiners' Left records settle out of the benchmark.
        time.sleep(5)

        a = sent(); time.sleep(30); b = sent()
        rates = [(y - x) / 30 for x, y in zip(a, b)]
        print(f"gossip bytes sent per node per second, idle, 5 live nodes + {TRIALS} departed joiners still listed: mean={sum(rates)/len(rates):.0f}")

        # False deaths with one node stalled 1 s every 10 s.
        victim = nodes[2]
        def deaths():
            c = 0
            for n in nodes:
                if n is victim:
                    continue
                for e in n.get("/api/v1/events")["items"]:
                    if e["involvedObject"]["name"] == victim.name and e["reason"] == "Dead":
                        c += 1
            return c
        before = deaths()
        t_end = time.monotonic() + STALL
        stalls = 0
        while time.monotonic() < t_end:
            os.kill(victim.proc.pid, signal.SIGSTOP)
            time.sleep(1.0)
            os.kill(victim.proc.pid, signal.SIGCONT)
            stalls += 1
            time.sleep(9.0)
        print(f"false deaths over {STALL}s with {victim.name} SIGSTOPped 1 s every 10 s ({stalls} stalls): {deaths() - before} (Dead events on the 4 peers)")
    finally:
        for n in nodes:
            if n.proc:
                n.proc.send_signal(signal.SIGTERM)
        for n in nodes:
            if n.proc:
                n.proc.wait()


if __name__ == "__main__":
    main()
