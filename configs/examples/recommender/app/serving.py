"""Model serving: answers "what should user 123 watch?".

It loads the newest published model from ingestion (asking every 2 s, a
304 when it has it) and answers from memory, so it keeps answering with
the last model it loaded when training, features or ingestion fail.

    GET /recommend?user=ID[&k=10]
        {"user", "model" (its version), "serving" (this build), "items":
         [{"movie", "title", "genre", "score"}]}
    GET /ready    200 once a model is loaded (the readiness probe)

`SERVING_VERSION` names the build in every answer, and `POPULARITY_BLEND`
(0 to 1) mixes the movies' damped mean rating into the score: the "new
model format" a rolling update brings in (the model carries both).

Each answer costs real work, a few ms of CPU (scoring every movie against
the user's ratings, as an embedding model would): `WORK` repeats it.
"""

import os
import threading
import time

from common import HttpError, Reply, bad_request, call, log, serve, service_url
from data import catalogue
from training import recommend

VERSION = os.environ.get("SERVING_VERSION", "v1")
BLEND = float(os.environ.get("POPULARITY_BLEND") or 0)
WORK = int(os.environ.get("WORK") or 1)
CATALOGUE = catalogue()
model = None
loaded_at = 0.0


def refresh():
    global model, loaded_at
    base = service_url("ingestion")
    while True:
        try:
            have = model["version"] if model else ""
            status, m, _ = call("GET", f"{base}/models/latest?have={have}", timeout=10)
            if status == 200 and m and (model is None or m["version"] > model["version"]):
                m["popular_rank"] = {b: i for i, b in enumerate(m.get("popular", []))}
                model, loaded_at = m, time.time()
                log(f"loaded model {m['version']} (genre hit rate {m.get('genre_hit_rate')})")
        except HttpError as e:
            if e.status != 404:
                log("model refresh:", e)
        except OSError as e:
            log("model refresh:", e)
        time.sleep(2)


def rec(h, q, body):
    m = model
    if m is None:
        raise Reply(503, {"error": "no model loaded yet"})
    try:
        user = int(q.get("user", ""))
        k = int(q.get("k") or 10)
    except ValueError:
        raise bad_request("user", "must be an integer user id (and k an integer)") from None
    if not 1 <= k <= 50:
        raise bad_request("k", "must be from 1 to 50")
    for _ in range(WORK):
        items = recommend(m, user, k=max(k, 20))
    if BLEND:
        rank = m["popular_rank"]
        items = sorted(items, key=lambda it: -((1 - BLEND) * it[1] + BLEND * (1 - rank.get(it[0], 50) / 50)))
    return {
        "user": user,
        "model": m["version"],
        "serving": VERSION,
        "items": [
            {"movie": b, "title": CATALOGUE[b][0], "genre": CATALOGUE[b][1], "score": s} for b, s in items[:k]
        ],
    }


def ready(h, q, body):
    if model is None:
        raise Reply(503, {"error": "no model loaded yet"})
    return {"model": model["version"], "serving": VERSION, "loaded_at": loaded_at}


if __name__ == "__main__":
    log(f"serving {VERSION} (popularity blend {BLEND})")
    threading.Thread(target=refresh, daemon=True).start()
    serve("serving", {("GET", "/recommend"): rec, ("GET", "/ready"): ready, ("GET", "/model"): ready,
                      ("GET", "/healthz"): lambda h, q, b: {"ok": True}})
