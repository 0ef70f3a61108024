"""Shared helpers for the bench scripts: real `shoal` nodes on loopback."""
import json, os, re, signal, subprocess, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SHOAL_BIN runs another build (the debug one, say) without rebuilding.
BIN = os.environ.get("SHOAL_BIN") or os.path.join(ROOT, "target", "release", "shoal")


def build():
    if os.environ.get("SHOAL_BIN"):
        return
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


class Node:
    def __init__(self, name, ip, tmp, join=None, token=None, config=None, args=()):
        self.name, self.ip, self.dir = name, ip, os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.join, self.token, self.proc, self.config, self.args = join, token, None, config, list(args)

    def start(self):
        args = [BIN, "up", "--data-dir", self.dir + "/data", "--node-ip", self.ip, "--name", self.name] + self.args
        if self.config:
            with open(self.dir + "/node.toml", "w") as f:
                f.write(self.config)
            args += ["--config", self.dir + "/node.toml"]
        if self.join and not os.path.exists(self.dir + "/data/identity.json"):
            args += ["--join", self.join + ":7421", "--token", self.token]
        self.log = open(self.dir + "/node.log", "a")
        # The data key beside the data dir, not in /etc/shoal/keys.
        env = dict(os.environ, SHOAL_DATA_KEY_FILE=self.dir + "/data-key.json")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.api_token = open(self.dir + "/data/api-token").read().strip()
                self.get("/healthz", raw=True)
                return self
            except Exception:
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start")

    def req(self, method, path, body=None, raw=False, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(f"http://{self.ip}:7420{path}", data=data, method=method,
                                   headers={"Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"})
        out = urllib.request.urlopen(r, timeout=timeout).read()
        return out if raw else json.loads(out)

    def get(self, path, raw=False):
        return self.req("GET", path, raw=raw)

    def metric(self, name):
        txt = self.get("/metrics", raw=True).decode()
        return sum(float(l.split()[-1]) for l in txt.splitlines() if l.startswith(name + " ") or l.startswith(name + "{"))

    def states(self):
        return {n["metadata"]["name"]: n["status"]["state"] for n in self.get("/api/v1/nodes")["items"]}

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()
            self.proc = None


def wrk(url, secs, conns=32, close=False, prefix=()):
    """wrk -t2 against `url` for `secs` (run under `prefix`, e.g. `ip netns
    exec NS`): (requests per second, p50 ms, p99 ms)."""
    args = list(prefix) + ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", url]
    if close:
        args[len(prefix) + 1:len(prefix) + 1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    return rps, lat(50), lat(99)


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


def cluster(n, tmp, base, config=None):
    nodes = [Node("n1", base + "1", tmp, config=config).start()]
    token = subprocess.run([BIN, "token", "--server", f"http://{base}1:7420", "--data-dir", nodes[0].dir + "/data"],
                           capture_output=True, text=True, check=True).stdout.strip()
    for i in range(2, n + 1):
        nodes.append(Node(f"n{i}", base + str(i), tmp, base + "1", token, config=config).start())
    wait(lambda: all(list(x.states().values()).count("Ready") == n for x in nodes))
    return nodes, token


def stop_all(nodes):
    for n in nodes:
        if n.proc:
            n.proc.send_signal(signal.SIGTERM)
    for n in nodes:
        if n.proc:
            n.proc.wait()
