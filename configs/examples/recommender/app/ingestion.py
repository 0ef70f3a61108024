"""Ingestion: accepts rating events over HTTP and stores them durably, with
the published models (the example's one stateful service).

Durability without a shared disk: ingestion runs as several replicas (3,
spread over the nodes), each with its own SQLite log. Every entry gets an
id (origin, seq) from the replica that accepted it.

- A write is acknowledged (201) only once a *second* replica stored it:
  the accepting replica pushes it through the `ingestion` Service until a
  replica other than itself answers. A replica alone answers 503 and keeps
  the entry; the client retries with the same event id, which is stored
  once (an id already held is not stored again).
- Every second each replica pulls, through the Service, the entries it lacks
  (a version vector: the highest seq it holds of each origin). So every
  replica converges to every entry, and a replacement replica, started
  empty on another node, catches up from the others.

So an acknowledged event survives the loss of any one node. An event in
flight on a node that dies was either acknowledged (a second replica holds
it) or not (the client got an error and retries elsewhere).

Writes (POST) need `Authorization: Bearer $INGEST_TOKEN` when that is set
(the example sets it from the `recommender` Secret).

    POST /ratings   {"id", "user", "movie", "rating", "ts"} or a list of them
    POST /models    {"version", ...}: a trained model
    GET  /models/latest[?have=VERSION]   the newest model (304 if `have`)
    GET  /log?vv=JSON[&kind=K]           entries after a version vector, and
                                         `upto`: through which seq of each origin
                                         the asker then has them all
    POST /replicate                      entries from a peer replica
    GET  /stats                          counts, this replica's origin
    GET  /has?kind=rating&key=ID         whether this replica holds an entry
"""

import json
import os
import sqlite3
import threading
import time
import uuid

from common import HttpError, Reply, bad_request, call, log, serve, service_url
from data import MOVIES

PAGE = 2000
lock = threading.Lock()


def open_db():
    path = os.path.join(os.environ.get("SHOAL_VOLUME_DATA") or os.environ.get("DATA_DIR") or "/data", "ingestion.db")
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
        CREATE TABLE IF NOT EXISTS log(origin TEXT, seq INTEGER, kind TEXT, key TEXT, body TEXT,
                                       PRIMARY KEY(origin, seq));
        CREATE INDEX IF NOT EXISTS log_key ON log(kind, key);
        CREATE TABLE IF NOT EXISTS vv(origin TEXT PRIMARY KEY, seq INTEGER);
        CREATE TABLE IF NOT EXISTS unacked(origin TEXT, seq INTEGER, PRIMARY KEY(origin, seq));
        """
    )
    row = db.execute("SELECT v FROM meta WHERE k='origin'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta VALUES('origin', ?)", (uuid.uuid4().hex[:12],))
        row = db.execute("SELECT v FROM meta WHERE k='origin'").fetchone()
    return db, row[0], path


DB, ORIGIN, PATH = open_db()


def vector():
    return dict(DB.execute("SELECT origin, seq FROM vv").fetchall())


def store(entries, upto=None):
    """Stores entries from anywhere; returns how many were new. The version
    vector only moves over an unbroken run of each origin's entries (a push
    may arrive before the entries before it), and to `upto` (origin -> seq
    a peer sent every entry through)."""
    new = 0
    with lock:
        DB.execute("BEGIN IMMEDIATE")
        for e in entries:
            cur = DB.execute("INSERT OR IGNORE INTO log VALUES(?,?,?,?,?)", (e["o"], e["s"], e["k"], e["key"], e["b"]))
            new += cur.rowcount
        vv = dict(DB.execute("SELECT origin, seq FROM vv").fetchall())
        for o in {e["o"] for e in entries} | set(upto or {}):
            seq = max(vv.get(o, 0), (upto or {}).get(o, 0))
            while DB.execute("SELECT 1 FROM log WHERE origin=? AND seq=?", (o, seq + 1)).fetchone():
                seq += 1
            DB.execute("INSERT INTO vv VALUES(?,?) ON CONFLICT(origin) DO UPDATE SET seq=max(seq, excluded.seq)", (o, seq))
        DB.execute("COMMIT")
    return new


def accept(kind, items):
    """Stores new items under this replica's origin; returns the entries that
    still need a second replica (new ones, and earlier unacknowledged ones
    a client retried)."""
    pending = []
    with lock:
        DB.execute("BEGIN IMMEDIATE")
        (seq,) = DB.execute("SELECT coalesce(max(seq), 0) FROM vv WHERE origin=?", (ORIGIN,)).fetchone()
        for key, body in items:
            row = DB.execute("SELECT origin, seq, body FROM log WHERE kind=? AND key=?", (kind, key)).fetchone()
            if row is not None:
                if DB.execute("SELECT 1 FROM unacked WHERE origin=? AND seq=?", row[:2]).fetchone():
                    pending.append({"o": row[0], "s": row[1], "k": kind, "key": key, "b": row[2]})
                continue
            seq += 1
            b = json.dumps(body, separators=(",", ":"))
            DB.execute("INSERT INTO log VALUES(?,?,?,?,?)", (ORIGIN, seq, kind, key, b))
            DB.execute("INSERT INTO unacked VALUES(?,?)", (ORIGIN, seq))
            pending.append({"o": ORIGIN, "s": seq, "k": kind, "key": key, "b": b})
        DB.execute(
            "INSERT INTO vv VALUES(?,?) ON CONFLICT(origin) DO UPDATE SET seq=max(seq, excluded.seq)", (ORIGIN, seq)
        )
        DB.execute("COMMIT")
    return pending


def replicate(entries, attempts=24):
    """Pushes entries through the Service until another replica stored them.

    The proxy may pick this replica itself (409) several times running: its
    409 answers are the fastest, so the balancer, which favours the fastest
    replica of the two it draws, keeps it whenever it is drawn (2 draws in
    3 with 3 replicas). 12 attempts left about one write in 130 unreplicated
    (a CI run saw one); 24 leave one in 16,000, within about 2 s."""
    if not entries:
        return True
    base = service_url("ingestion")
    for i in range(attempts):
        try:
            call("POST", f"{base}/replicate", entries, timeout=5, headers={"X-Origin": ORIGIN})
            with lock:
                DB.executemany("DELETE FROM unacked WHERE origin=? AND seq=?", [(e["o"], e["s"]) for e in entries])
            return True
        except HttpError as e:
            if e.status != 409:  # 409: the proxy picked this replica itself
                log("replicate:", e)
        except OSError as e:
            log("replicate:", e)
        time.sleep(0.02 * min(i, 5))
    return False


def write(kind, items):
    pending = accept(kind, items)
    if not replicate(pending):
        raise Reply(503, {"error": "stored on this replica only (no other ingestion replica answered); retry"})
    return Reply(201, {"stored": len(items), "origin": ORIGIN})


def check_rating(e, path):
    if not isinstance(e, dict):
        raise bad_request(path, "must be an object")
    for f in ("user", "movie"):
        if not isinstance(e.get(f), int) or e[f] < 0:
            raise bad_request(f"{path}.{f}", "must be a non-negative integer")
    if e["movie"] >= MOVIES:
        raise bad_request(f"{path}.movie", f"no movie {e['movie']} (the catalogue has 0-{MOVIES - 1})")
    r = e.get("rating")
    if not isinstance(r, (int, float)) or not 0.5 <= r <= 5:
        raise bad_request(f"{path}.rating", "must be a number from 0.5 to 5")
    key = e.get("id") or uuid.uuid4().hex
    if not isinstance(key, str) or len(key) > 200:
        raise bad_request(f"{path}.id", "must be a string of at most 200 characters")
    return key, {"user": e["user"], "movie": e["movie"], "rating": float(r), "ts": e.get("ts") or time.time()}


def authorize(h):
    """Writes need the token of the `recommender` Secret, when one is set."""
    token = os.environ.get("INGEST_TOKEN")
    if token and h.headers.get("Authorization") != f"Bearer {token}":
        raise Reply(401, {"error": "writes need 'Authorization: Bearer <INGEST_TOKEN>' (Secret recommender, key ingest-token)"})


def post_ratings(h, q, body):
    authorize(h)
    items = body if isinstance(body, list) else [body]
    if len(items) > 5000:
        raise bad_request("body", "at most 5000 ratings per request")
    return write("rating", [check_rating(e, f"[{i}]" if isinstance(body, list) else "body") for i, e in enumerate(items)])


def post_model(h, q, body):
    authorize(h)
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        raise bad_request("body.version", "a model needs a string version")
    return write("model", [(body["version"], body)])


def latest_model(h, q, body):
    row = DB.execute("SELECT key, body FROM log WHERE kind='model' ORDER BY key DESC LIMIT 1").fetchone()
    if row is None:
        raise Reply(404, {"error": "no model published yet (training has not run)"})
    if q.get("have") == row[0]:
        raise Reply(304, None)
    return json.loads(row[1])


def has(h, q, body):
    row = DB.execute("SELECT origin, seq FROM log WHERE kind=? AND key=?", (q.get("kind", "rating"), q.get("key"))).fetchone()
    if row is None:
        raise Reply(404, {"error": f"no {q.get('kind', 'rating')} {q.get('key')!r} on replica {ORIGIN}"})
    return {"origin": row[0], "seq": row[1], "replica": ORIGIN}


def get_log(h, q, body):
    """Entries after the asker's vector `vv`, of `kind` if given. Only each
    origin's unbroken run is sent; `upto` says, per origin, through which
    seq the asker now has every entry (of that kind)."""
    try:
        vv = json.loads(q.get("vv") or "{}")
        assert isinstance(vv, dict)
    except (ValueError, AssertionError):
        raise bad_request("vv", "must be a JSON object of origin -> seq") from None
    kind = q.get("kind")
    out, upto, more = [], {}, False
    for origin, seq in vector().items():
        have = vv.get(origin, 0)
        if have >= seq:
            continue
        sql = "SELECT origin, seq, kind, key, body FROM log WHERE origin=? AND seq>? AND seq<=?"
        args = [origin, have, seq]
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        room = PAGE - len(out)
        rows = DB.execute(sql + " ORDER BY seq LIMIT ?", args + [room + 1]).fetchall()
        if len(rows) > room:
            rows, more = rows[:room], True
            upto[origin] = rows[-1][1] if rows else have
        else:
            upto[origin] = seq
        out.extend({"o": o, "s": s, "k": k, "key": key, "b": b} for o, s, k, key, b in rows)
        if more:
            break
    return {"origin": ORIGIN, "entries": out, "upto": upto, "more": more}


def post_replicate(h, q, body):
    authorize(h)
    if h.headers.get("X-Origin") == ORIGIN:
        raise Reply(409, {"error": "sent to itself"})
    if not isinstance(body, list):
        raise bad_request("body", "a list of entries")
    return {"new": store(body)}


def stats(h, q, body):
    counts = dict(DB.execute("SELECT kind, count(*) FROM log GROUP BY kind").fetchall())
    (unacked,) = DB.execute("SELECT count(*) FROM unacked").fetchone()
    return {"origin": ORIGIN, "ratings": counts.get("rating", 0), "models": counts.get("model", 0),
            "unacked": unacked, "vv": vector()}


def anti_entropy():
    """Pulls what this replica lacks from the others, through the Service."""
    base = service_url("ingestion")
    while True:
        try:
            vv = vector()
            _, page, _ = call("GET", f"{base}/log?vv={json.dumps(vv, separators=(',', ':'))}", timeout=10)
            if page["origin"] != ORIGIN and page["upto"]:
                store(page["entries"], page["upto"])
            if page["origin"] != ORIGIN and page["more"]:
                continue
            # Unacknowledged entries of this replica: try again.
            rows = DB.execute(
                "SELECT l.origin, l.seq, l.kind, l.key, l.body FROM unacked u JOIN log l USING(origin, seq) LIMIT 500"
            ).fetchall()
            replicate([{"o": o, "s": s, "k": k, "key": key, "b": b} for o, s, k, key, b in rows], attempts=3)
        except (OSError, HttpError, ValueError, KeyError) as e:
            log("anti-entropy:", e)
        time.sleep(1)


if __name__ == "__main__":
    log(f"ingestion replica {ORIGIN}, log at {PATH}")
    threading.Thread(target=anti_entropy, daemon=True).start()
    serve(
        "ingestion",
        {
            ("POST", "/ratings"): post_ratings,
            ("POST", "/models"): post_model,
            ("GET", "/models/latest"): latest_model,
            ("GET", "/log"): get_log,
            ("POST", "/replicate"): post_replicate,
            ("GET", "/stats"): stats,
            ("GET", "/has"): has,
            ("GET", "/healthz"): lambda h, q, b: {"ok": True},
        },
    )
