"""Feature engineering: turns the raw rating events into model inputs.

It follows ingestion's log (every second, through the `ingestion` Service,
with a version vector, as the ingestion replicas do among themselves) and
keeps, in memory:

- per user: the latest rating of each movie, their mean and count;
- per movie: count, mean and a damped mean (Bayesian, towards the global
  mean), its popularity.

It holds nothing that cannot be rebuilt: a replacement on another node
reads the log again from the start (9,000 seed events take about a second).

    GET /features   everything training needs, with `events` (how many
                    ratings it has read) as its version
    GET /ready      200 once it has read the whole log once
"""

import json
import threading
import time

from common import Reply, call, log, serve, service_url

lock = threading.Lock()
ratings = {}  # user -> movie -> (ts, rating)
keys = set()  # event ids read
events = 0
caught_up = False


def follow():
    global events, caught_up
    base = service_url("ingestion")
    vv = {}
    while True:
        try:
            q = json.dumps(vv, separators=(",", ":"))
            _, page, _ = call("GET", f"{base}/log?kind=rating&vv={q}", timeout=10)
            with lock:
                for e in page["entries"]:
                    if e["key"] in keys:  # a client's retry taken by two replicas
                        continue
                    keys.add(e["key"])
                    b = json.loads(e["b"])
                    mine = ratings.setdefault(b["user"], {})
                    old = mine.get(b["movie"])
                    if old is None or old[0] <= b["ts"]:
                        mine[b["movie"]] = (b["ts"], b["rating"])
                    events += 1
                for o, s in page["upto"].items():
                    vv[o] = max(vv.get(o, 0), s)
            if page["more"]:
                continue
            if not caught_up:
                caught_up = True
                log(f"caught up: {events} ratings")
        except Exception as e:  # keep following whatever a response held
            log("follow:", repr(e))
        time.sleep(1)


def features(h, q, body):
    with lock:
        users = {u: {m: r for m, (_, r) in ms.items()} for u, ms in ratings.items()}
        n = events
    per_item = {}
    total = count = 0
    for ms in users.values():
        for m, r in ms.items():
            s = per_item.setdefault(m, [0.0, 0])
            s[0] += r
            s[1] += 1
            total += r
            count += 1
    mean = total / count if count else 0.0
    items = {
        m: {"count": c, "mean": s / c, "damped": (s + 10 * mean) / (c + 10)} for m, (s, c) in per_item.items()
    }
    user_means = {u: sum(ms.values()) / len(ms) for u, ms in users.items() if ms}
    return {"events": n, "mean": mean, "users": users, "user_means": user_means, "items": items}


def ready(h, q, body):
    if not caught_up:
        raise Reply(503, {"error": "still reading the ingestion log"})
    return {"events": events}


if __name__ == "__main__":
    threading.Thread(target=follow, daemon=True).start()
    serve("features", {("GET", "/features"): features, ("GET", "/ready"): ready,
                       ("GET", "/healthz"): lambda h, q, b: {"ok": True}})
