#!/usr/bin/env python3
"""`kubectl get pods` against PODS pods (release build, loopback, 3 nodes).

PODS process pods (`sleep`) in DEPLOYMENTS Deployments; once all Run,
times, RUNS times each, the newest preinstalled kubectl (or KUBECTL):

- `kubectl get pods` (a server-side Table), `-o wide`, `-o json`, `-o name`;
- the same list over HTTP without kubectl (JSON; Table), to tell the
  server's part from kubectl's own start and printing.

kubectl's discovery cache is filled once first (`kubectl api-resources`).

Usage: bench/kubectl_get.py [PODS] [RUNS]
"""
import glob, json, os, subprocess, sys, tempfile, time, urllib.request
from shoalbench import BIN, build, cluster, pct, stop_all, wait

PODS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
DEPLOYMENTS = 10
CONFIG = f"[capacity]\nmax_pods = {PODS}\n"


def newest_kubectl():
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    real = os.path.realpath("/usr/bin/kubectl")
    versioned = sorted(glob.glob(os.path.join(os.path.dirname(real), "kubectl.1.*")),
                       key=lambda p: int(p.rsplit(".", 1)[1]))
    return versioned[-1] if versioned else "kubectl"


def deployment(i, replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"sleepers-{i}"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": f"s{i}"}},
                     "template": {"metadata": {"labels": {"app": f"s{i}"}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "main", "command": ["sleep", "100000"]}]}}}}


def timed(f, runs):
    ts = []
    for _ in range(runs):
        t = time.monotonic()
        f()
        ts.append((time.monotonic() - t) * 1000)
    return ts


def main():
    build()
    kubectl = newest_kubectl()
    with tempfile.TemporaryDirectory() as tmp:
        nodes, _ = cluster(3, tmp, "127.0.78.", config=CONFIG)
        try:
            n1 = nodes[0]
            per = PODS // DEPLOYMENTS
            body = "\n---\n".join(json.dumps(deployment(i, per)) for i in range(DEPLOYMENTS))
            n1.req("POST", "/shoal/v1/apply", {"files": [{"name": "sleepers.yaml", "content": body}]})
            running = lambda: sum(p["status"].get("phase") == "Running" for p in n1.get("/api/v1/pods")["items"])
            took = wait(lambda: running() >= per * DEPLOYMENTS, timeout=600, step=0.5)
            print(f"{per * DEPLOYMENTS} pods Running after {took:.1f} s")
            kc = os.path.join(tmp, "kubeconfig")
            out = subprocess.run([BIN, "kubeconfig", "--server", f"https://{n1.ip}:7420"], capture_output=True,
                                 text=True, check=True, env=dict(os.environ, SHOAL_DATA_DIR=n1.dir + "/data")).stdout
            open(kc, "w").write(out)
            env = dict(os.environ, KUBECONFIG=kc, HOME=tmp)
            ver = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True,
                                 env=env).stdout
            # kubectl caches discovery under $HOME/.kube/cache: fill it once,
            # as any earlier kubectl call would have.
            subprocess.run([kubectl, "api-resources"], capture_output=True, env=env, check=True)
            print(f"kubectl {json.loads(ver)['clientVersion']['gitVersion']}, {RUNS} runs each, ms:")
            rows = []
            for args in (["get", "pods"], ["get", "pods", "-o", "wide"], ["get", "pods", "-o", "json"],
                         ["get", "pods", "-o", "name"], ["version", "--client"]):
                def run():
                    r = subprocess.run([kubectl] + args, capture_output=True, env=env)
                    assert r.returncode == 0, r.stderr
                    if args[:2] == ["get", "pods"] and "-o" not in args:
                        assert r.stdout.count(b"\n") == per * DEPLOYMENTS + 1, r.stdout[-300:]
                ts = timed(run, RUNS)
                rows.append(("kubectl " + " ".join(args), ts))
            table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
            for name, accept in (("HTTP list, JSON", "application/json"), ("HTTP list, Table", table)):
                def get():
                    r = urllib.request.Request(f"http://{n1.ip}:7420/api/v1/namespaces/default/pods",
                                               headers={"Authorization": f"Bearer {n1.api_token}", "Accept": accept})
                    urllib.request.urlopen(r, timeout=60).read()
                rows.append((name, timed(get, RUNS)))
            for name, ts in rows:
                print(f"  {name:32s} p50 {pct(ts, 50):7.1f}  p99 {pct(ts, 99):7.1f}")
        finally:
            stop_all(nodes)


if __name__ == "__main__":
    main()
