#!/usr/bin/env python3
"""Load generator for the movie recommender (configs/examples/recommender).

Sends GET requests at a steady rate (open loop: request i is due at
start + i/rate, and its latency counts from then, so a stall shows as
latency, not as fewer requests) to the given node ports in turn. A request
that fails (connection refused or reset, a 5xx, no answer within
`--timeout`) is retried at once on the next node, `--retries` times: a
client retrying through another node's proxy. (A kept-alive connection
closed by its backend is first reopened once, as HTTP clients do.) A
request still waiting for a free worker `--timeout` after it was due
counts as failed and is not sent, so an overloaded service cannot make the
generator fall ever further behind. Prints one line per second:

    t  sent  ok  failed  retried  p50_ms  p99_ms  models (and serving builds)

and, with `--json FILE`, every second's figures and the totals, for tests.

    python3 bench/recommender.py --targets 127.0.0.1:30081 --rate 100 --duration 30
    python3 bench/recommender.py --targets 10.0.0.2:30080,10.0.0.3:30080 \\
        --path '/api/recommend?user={user}' --rate 50 --duration 60
"""

import argparse
import http.client
import json
import math
import queue
import random
import sys
import threading
import time


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


class Worker(threading.Thread):
    """Takes due requests off the queue; one keep-alive connection per target."""

    def __init__(self, args, due, results, buckets):
        super().__init__(daemon=True)
        self.args, self.due, self.results, self.buckets = args, due, results, buckets
        self.conns = {}

    def get(self, target, path):
        """GET on the pooled keep-alive connection to `target`. If a reused
        connection fails before any answer (its backend went away while it
        was idle), the request goes once more on a new connection, as
        browsers and HTTP client libraries do for idempotent requests."""
        reused = target in self.conns
        try:
            return self.get_once(target, path)
        except (OSError, http.client.HTTPException):
            if not reused:
                raise
            return self.get_once(target, path)

    def get_once(self, target, path):
        conn = self.conns.get(target)
        if conn is None:
            host, port = target.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=self.args.timeout)
            self.conns[target] = conn
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if r.status >= 500:
                raise OSError(f"HTTP {r.status}")
            return r.status, body
        except (OSError, http.client.HTTPException):
            conn.close()
            self.conns.pop(target, None)
            raise

    def run(self):
        targets = self.args.targets
        while True:
            item = self.due.get()
            if item is None:
                return
            i, at = item
            now = time.time()
            if at > now:
                time.sleep(at - now)
            elif now - at > self.args.timeout:
                # Every worker was busy for longer than a request may take:
                # the request counts as failed, unsent, so that the
                # generator stays on time instead of falling ever further
                # behind an overloaded service.
                r = (at, now - at, False, 0, None, f"not sent: every worker busy for over {self.args.timeout} s", None)
                self.results.append(r)
                self.buckets.setdefault(int(i // self.args.rate), []).append(r)
                continue
            path = self.args.path.format(user=random.randrange(self.args.users))
            ok, retried, model, serving, error = False, 0, None, None, None
            for attempt in range(self.args.retries + 1):
                target = targets[(i + attempt) % len(targets)]
                try:
                    status, body = self.get(target, path)
                    if status == 200:
                        ok = True
                        try:
                            j = json.loads(body)
                            model, serving = j.get("model"), j.get("serving")
                        except ValueError:
                            pass
                    else:
                        error = f"HTTP {status}"
                    break
                except (OSError, http.client.HTTPException) as e:
                    error = f"{target}: {e}"
                    retried += attempt < self.args.retries
            r = (at, time.time() - at, ok, retried, model, None if ok else error, serving)
            self.results.append(r)
            self.buckets.setdefault(int(i // self.args.rate), []).append(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", required=True, help="host:port,... (each node's port of the service)")
    ap.add_argument("--path", default="/recommend?user={user}")
    ap.add_argument("--rate", type=float, default=50, help="requests per second")
    ap.add_argument("--duration", type=float, default=30, help="seconds (until killed if 0)")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--retries", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--json", help="write every second's figures and the totals here (also on SIGTERM)")
    args = ap.parse_args()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    due, results, buckets = queue.Queue(), [], {}
    start = time.time()
    workers = [Worker(args, due, results, buckets) for _ in range(args.workers)]
    for w in workers:
        w.start()
    stop = threading.Event()

    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    seconds = []
    print("t\tsent\tok\tfailed\tretried\tp50_ms\tp99_ms\tmodels", flush=True)
    i, reported = 0, 0
    while not stop.is_set() and (args.duration <= 0 or time.time() - start < args.duration):
        now = time.time()
        while start + i / args.rate <= now + 0.05:
            due.put((i, start + i / args.rate))
            i += 1
        # Report each whole second once every request due in it has ended
        # (or 2 timeouts after it).
        while True:
            sec_end = start + reported + 1
            done = list(buckets.get(reported, []))
            expected = min(i, math.ceil((reported + 1) * args.rate)) - math.ceil(reported * args.rate)
            if now < sec_end or (len(done) < expected and now < sec_end + 2 * args.timeout + 1):
                break
            seconds.append(summary_of(done, sec_end - 1))
            s = seconds[-1]
            print(f"{reported}\t{s['sent']}\t{s['ok']}\t{s['failed']}\t{s['retried']}\t{s['p50_ms']}\t{s['p99_ms']}"
                  f"\t{','.join(s['models'])} {','.join(s['servings'])}", flush=True)
            reported += 1
        time.sleep(0.01)
    for _ in workers:
        due.put(None)
    deadline = time.time() + 2 * args.timeout + 1
    for w in workers:
        w.join(max(0.0, deadline - time.time()))
    total = summary_of(list(results), start)
    total.update(rate=args.rate, targets=args.targets, path=args.path, seconds=seconds,
                 errors=sorted({r[5] for r in results if r[5]})[:20])
    print(f"total: {total['sent']} sent, {total['ok']} ok, {total['failed']} failed "
          f"({100 * total['failed'] / max(1, total['sent']):.2f} %), {total['retried']} retried; "
          f"p50 {total['p50_ms']} ms, p99 {total['p99_ms']} ms", flush=True)
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(total, f)
        import os

        os.replace(args.json + ".tmp", args.json)
    return 0


def summary_of(rs, at):
    lat = [r[1] * 1000 for r in rs if r[2]]
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    return {
        "at": at,
        "sent": len(rs),
        "ok": sum(1 for r in rs if r[2]),
        "failed": sum(1 for r in rs if not r[2]),
        "retried": sum(r[3] for r in rs),
        "p50_ms": None if p50 is None else round(p50, 1),
        "p99_ms": None if p99 is None else round(p99, 1),
        "models": sorted({r[4] for r in rs if r[4]}),
        "servings": sorted({r[6] for r in rs if r[6]}),
    }


if __name__ == "__main__":
    sys.exit(main())
