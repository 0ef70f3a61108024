"""Model training: one run, started by the `training` CronJob (and once by
the `training-first` Job when the example is applied).

It fits an item-item collaborative filter on the features: the cosine
similarity of movies over mean-centred ratings, keeping each movie's 20
nearest neighbours. The model also carries each user's ratings (serving
needs nothing else at request time) and the movies' damped means
(popularity, for users it does not know). It publishes the model to
ingestion, which replicates it, under a version that sorts by time:
`<UTC time>-<events>`.

It checks itself before publishing: on users it knows, the top 10 movies
it recommends must mostly be of the genres the generator made the user
like (`genre_hit_rate`, 1/3 if it were random). A model that fails that is
not published and the run fails.
"""

import math
import os
import sys
import time

from common import call, log, retrying, service_url
from data import GENRES, catalogue, liked

NEIGHBOURS = 20


def fit(f):
    users = {int(u): {int(m): r for m, r in ms.items()} for u, ms in f["users"].items()}
    means = {int(u): m for u, m in f["user_means"].items()}
    by_item = {}
    for u, ms in users.items():
        for m, r in ms.items():
            by_item.setdefault(m, {})[u] = r - means[u]
    norms = {m: math.sqrt(sum(v * v for v in us.values())) or 1.0 for m, us in by_item.items()}
    neighbours = {}
    items = sorted(by_item)
    for a in items:
        ua = by_item[a]
        sims = []
        for b in items:
            if a == b:
                continue
            ub = by_item[b]
            small, big = (ua, ub) if len(ua) < len(ub) else (ub, ua)
            dot = sum(v * big[u] for u, v in small.items() if u in big)
            if dot > 0:
                sims.append((dot / (norms[a] * norms[b]), b))
        sims.sort(reverse=True)
        neighbours[a] = [[b, round(s, 4)] for s, b in sims[:NEIGHBOURS]]
    popular = sorted(((i["damped"], int(m)) for m, i in f["items"].items()), reverse=True)
    return {
        "neighbours": {str(a): n for a, n in neighbours.items()},
        "users": {str(u): {str(m): r for m, r in ms.items()} for u, ms in users.items()},
        "user_means": {str(u): m for u, m in means.items()},
        "popular": [m for _, m in popular[:50]],
    }


def recommend(model, user, k=10):
    """Top `k` movies for `user`: the scoring serving uses."""
    mine = model["users"].get(str(user))
    if not mine:
        return [(m, 0.0) for m in model["popular"][:k]]
    mean = model["user_means"][str(user)]
    score, weight = {}, {}
    for m, r in mine.items():
        for b, s in model["neighbours"].get(str(m), []):
            if str(b) in mine:
                continue
            score[b] = score.get(b, 0.0) + s * (r - mean)
            weight[b] = weight.get(b, 0.0) + abs(s)
    ranked = sorted(((score[b] / weight[b], b) for b in score if weight[b] > 0), reverse=True)
    return [(b, round(s, 3)) for s, b in ranked[:k]]


def genre_hit_rate(model, users=range(0, 300, 7)):
    cat = catalogue()
    hits = total = 0
    for u in users:
        for m, _ in recommend(model, u):
            hits += cat[m][1] in liked(u)
            total += 1
    return hits / total if total else 0.0


def main():
    base = os.environ.get("FEATURES_URL") or service_url("features")
    # `MIN_EVENTS`: wait (up to 3 minutes) until features has read that many.
    want = int(os.environ.get("MIN_EVENTS") or 1)
    deadline = time.time() + 180
    while True:
        attempts = int(os.environ.get("FEATURES_ATTEMPTS") or 10)
        f = retrying("read features", lambda: call("GET", f"{base}/features", timeout=30)[1], attempts=attempts, pause=1)
        if f["events"] >= want:
            break
        if time.time() > deadline:
            raise SystemExit(f"features has read {f['events']} ratings, fewer than {want}: is the seed Job done?")
        time.sleep(1)
    started = time.time()
    model = fit(f)
    hit = genre_hit_rate(model)
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{f['events']}"
    model.update(version=version, events=f["events"], genre_hit_rate=round(hit, 3), genres=GENRES,
                 trained_seconds=round(time.time() - started, 2))
    log(f"model {version}: {len(model['neighbours'])} movies, {len(model['users'])} users, "
        f"genre hit rate {hit:.2f} (random: 0.33), {model['trained_seconds']} s")
    if hit < 0.6:
        raise SystemExit(f"model {version} recommends liked genres only {hit:.2f} of the time: not published")
    ingestion = service_url("ingestion")
    retrying("publish model", lambda: call("POST", f"{ingestion}/models", model, timeout=30), attempts=20, pause=0.5)
    log(f"published model {version}")


if __name__ == "__main__":
    main()
    sys.exit(0)
