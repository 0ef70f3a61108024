"""The example's data: a synthetic movie catalogue and a deterministic
ratings generator (nothing is downloaded), and `seed`, the Job that loads
the ratings into ingestion.

Each of the 120 movies has one of six genres; each of the 300 users likes
two genres, rates about 30 movies, and rates liked genres higher (with
noise). So a working recommender must find the genres: `training` checks
that its model recommends a user's liked genres (`genre_hit_rate`).

    python3 data.py seed      # posts every rating to ingestion (idempotent)
    python3 data.py dump      # prints the ratings as JSON lines
"""

import random
import sys

GENRES = ["noir", "space", "comedy", "western", "heist", "musical"]
_ADJ = ["Silent", "Last", "Crimson", "Hidden", "Broken", "Golden", "Electric", "Quiet", "Long", "Lost"]
_NOUN = {
    "noir": ["Alley", "Witness", "Rain", "Alibi"],
    "space": ["Orbit", "Nebula", "Station", "Comet"],
    "comedy": ["Wedding", "Roommates", "Picnic", "Vacation"],
    "western": ["Canyon", "Sheriff", "Frontier", "Saddle"],
    "heist": ["Vault", "Getaway", "Diamond", "Casino"],
    "musical": ["Chorus", "Encore", "Ballroom", "Overture"],
}
MOVIES = 120
USERS = 300
PER_USER = 30
SEED = 20261205


def catalogue():
    """movie id -> (title, genre), the same on every machine."""
    out = {}
    for m in range(MOVIES):
        genre = GENRES[m % len(GENRES)]
        nouns = _NOUN[genre]
        k = m // len(GENRES)
        title = f"The {_ADJ[k % len(_ADJ)]} {nouns[(k // len(_ADJ)) % len(nouns)]}"
        if k >= len(_ADJ) * len(nouns):
            title += f" {k // (len(_ADJ) * len(nouns)) + 1}"
        out[m] = (title, genre)
    return out


def liked(user):
    """The two genres user `user` likes."""
    r = random.Random(SEED * 7 + user)
    return r.sample(GENRES, 2)


def ratings():
    """Every seed rating, as the events ingestion stores."""
    cat = catalogue()
    out = []
    for u in range(USERS):
        r = random.Random(SEED + u)
        likes = liked(u)
        for m in r.sample(range(MOVIES), PER_USER):
            base = 4.2 if cat[m][1] in likes else 2.2
            stars = min(5.0, max(0.5, round((base + r.gauss(0, 0.6)) * 2) / 2))
            out.append({"id": f"seed-{u}-{m}", "user": u, "movie": m, "rating": stars, "ts": 0})
    return out


def seed():
    from common import call, log, retrying, service_url

    base = service_url("ingestion")
    events = ratings()
    batch = 500
    for i in range(0, len(events), batch):
        part = events[i : i + batch]
        retrying("post ratings", lambda: call("POST", f"{base}/ratings", part, timeout=30), attempts=30, pause=0.5)
    log(f"seeded {len(events)} ratings of {USERS} users on {MOVIES} movies into {base}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "seed":
        seed()
    elif cmd == "dump":
        import json

        for e in ratings():
            print(json.dumps(e))
    else:
        raise SystemExit("usage: data.py seed|dump")
