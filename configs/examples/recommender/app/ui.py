"""The UI: a web page that shows a user's recommendations, asked of the
`serving` Service, and lets them rate a movie (sent to `ingestion`).

    GET  /                     the page
    GET  /api/recommend?user=  through to serving (one retry on another replica)
    POST /api/ratings          through to ingestion
"""

import json

from common import HttpError, Reply, call, retrying, serve, service_url

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shoal movies</title>
<style>
body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;color:#123}
li{margin:.3rem 0} .g{color:#678;font-size:.85em} small{color:#678}
button{margin-left:.4rem}
</style></head><body>
<h1>What should you watch?</h1>
<form id="f">User <input id="u" type="number" min="0" value="123"> <button>Recommend</button></form>
<ol id="out"></ol><p><small id="meta"></small></p>
<script>
const out = document.getElementById('out'), meta = document.getElementById('meta');
async function show(user) {
  const r = await fetch('/api/recommend?user=' + encodeURIComponent(user));
  const j = await r.json();
  if (!r.ok) { out.innerHTML = ''; meta.textContent = j.error; return; }
  out.innerHTML = '';
  for (const it of j.items) {
    const li = document.createElement('li');
    li.textContent = it.title + ' ';
    const g = document.createElement('span'); g.className = 'g'; g.textContent = it.genre; li.append(g);
    const b = document.createElement('button'); b.textContent = 'I liked it';
    b.onclick = async () => {
      await fetch('/api/ratings', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({user: Number(user), movie: it.movie, rating: 5})});
      b.disabled = true; b.textContent = 'rated';
    };
    li.append(b); out.append(li);
  }
  meta.textContent = 'model ' + j.model + ', serving ' + j.serving;
}
document.getElementById('f').onsubmit = e => { e.preventDefault(); show(document.getElementById('u').value); };
show(document.getElementById('u').value);
</script></body></html>
"""


def passed_on(e):
    """A backend's error answer, passed on as it was (JSON if it was)."""
    try:
        return Reply(e.status, json.loads(e.body))
    except ValueError:
        return Reply(e.status, {"error": e.body})


def page(h, q, body):
    return PAGE


def recommend(h, q, body):
    base = service_url("serving")
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    try:
        return retrying("serving", lambda: call("GET", f"{base}/recommend?{qs}", timeout=5)[1], attempts=2, pause=0)
    except HttpError as e:
        raise passed_on(e) from None
    except RuntimeError as e:
        raise Reply(502, {"error": str(e)}) from None


def rate(h, q, body):
    try:
        _, out, _ = call("POST", f"{service_url('ingestion')}/ratings", body, timeout=10)
        return Reply(201, out)
    except HttpError as e:
        raise passed_on(e) from None
    except OSError as e:
        raise Reply(502, {"error": f"ingestion: {e}"}) from None


if __name__ == "__main__":
    serve("ui", {("GET", "/"): page, ("GET", "/api/recommend"): recommend, ("POST", "/api/ratings"): rate,
                 ("GET", "/healthz"): lambda h, q, b: {"ok": True}})
