"""What the five recommender services share: finding the other services,
JSON over HTTP with timeouts, and a small threaded JSON server.

Standard library only, so the same files run as Shoal process pods (any node
with python3) and in the images `docker/build.sh` makes.

A service is found the Kubernetes way: Shoal gives every pod
`<NAME>_SERVICE_HOST` (its own node's IP: every node proxies every service)
and `<NAME>_SERVICE_PORT` (the service's node port). `<NAME>_URL` overrides
both, for running a service by hand.
"""

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def service_url(name):
    """Base URL of Service `name` (e.g. "ingestion")."""
    key = name.upper().replace("-", "_")
    url = os.environ.get(f"{key}_URL")
    if url:
        return url.rstrip("/")
    host = os.environ.get(f"{key}_SERVICE_HOST")
    port = os.environ.get(f"{key}_SERVICE_PORT")
    if not host or not port:
        raise SystemExit(
            f"cannot find service {name!r}: set {key}_URL, or run under Shoal with a Service named {name!r} "
            f"in this namespace (it sets {key}_SERVICE_HOST and {key}_SERVICE_PORT)"
        )
    return f"http://{host}:{port}"


DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS") or 2)
# Admission control: past MAX_INFLIGHT requests in progress (0: no limit), a
# replica answers 503 at once instead of queueing. An overloaded replica
# then keeps a short queue, which drains within a second once load is
# shared with new replicas; an unbounded one computes answers its clients
# stopped waiting for, and can stay overloaded long after. Probes
# (/ready, /healthz) are always served.
MAX_INFLIGHT = int(os.environ.get("MAX_INFLIGHT") or 0)
_inflight = threading.BoundedSemaphore(MAX_INFLIGHT) if MAX_INFLIGHT > 0 else None
PROBES = ("/ready", "/healthz")


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


def call(method, url, body=None, timeout=5.0, headers=None):
    """One HTTP request; returns (status, parsed JSON or None, headers).
    Raises HttpError for 4xx/5xx and OSError when the peer is unreachable."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if method == "POST" and os.environ.get("INGEST_TOKEN"):
        req.add_header("Authorization", f"Bearer {os.environ['INGEST_TOKEN']}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None), r.headers
    except urllib.error.HTTPError as e:
        raw = e.read().decode(errors="replace")
        if e.code == 304:
            return 304, None, e.headers
        raise HttpError(e.code, raw) from None


def retrying(what, f, attempts=5, pause=0.2):
    """`f()` until it succeeds, `attempts` times at most: a new connection
    each time, so the node proxy may pick another replica."""
    last = None
    for i in range(attempts):
        try:
            return f()
        except (OSError, HttpError) as e:
            last = e
            if isinstance(e, HttpError) and 400 <= e.status < 500 and e.status not in (408, 409, 429):
                raise
            time.sleep(pause * (i + 1))
    raise RuntimeError(f"{what}: {last}")


class Reply(Exception):
    """Raised by a handler to answer with `status` and a JSON body."""

    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def bad_request(field, why):
    return Reply(400, {"error": f"{field}: {why}", "field": field})


class Handler(BaseHTTPRequestHandler):
    """Routes `GET /path` to `routes[("GET", "/path")](handler, query, body)`,
    which returns a JSON-able value (status 200) or raises `Reply`."""

    routes = {}
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: one line per request is too much under load
        pass

    def _serve(self, method):
        path, _, qs = self.path.partition("?")
        query = dict(p.split("=", 1) if "=" in p else (p, "") for p in qs.split("&") if p)
        query = {k: urllib.request.unquote(v) for k, v in query.items()}
        body = None
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if length:
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    raise Reply(400, {"error": f"body: not JSON ({e})"}) from None
            route = self.routes.get((method, path))
            if route is None:
                raise Reply(404, {"error": f"no route {method} {path}"})
            admitted = _inflight is None or path in PROBES or _inflight.acquire(blocking=False)
            if not admitted:
                raise Reply(503, {"error": "overloaded: try again"}, {"Retry-After": "1"})
            try:
                out = route(self, query, body)
            finally:
                if _inflight is not None and path not in PROBES:
                    _inflight.release()
            if isinstance(out, Reply):
                raise out
            self._send(200, out)
        except Reply as r:
            self._send(r.status, r.body, r.headers)
        except Exception as e:  # a bug must not kill the server thread silently
            log("error serving", method, self.path, repr(e))
            self._send(500, {"error": repr(e)})

    def _send(self, status, body, headers=None):
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
            ctype = (headers or {}).pop("Content-Type", "text/html; charset=utf-8")
        else:
            data = json.dumps(body).encode() if body is not None else b""
            ctype = "application/json"
        self.send_response(status)
        if draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")


draining = False


def serve(name, routes, default_port=8080):
    """Serves `routes` on `$PORT` (Shoal's allocated port for process pods;
    the container port in an image) until the process is killed."""
    port = int(os.environ.get("PORT") or default_port)
    # A process pod shares its host's network: it binds the node's own
    # address, where Shoal found its port free (0.0.0.0 would also need the
    # port free on every other address of the host, and crash-loop when a
    # client connection elsewhere holds it). A container binds everything.
    node_ip = os.environ.get("SHOAL_NODE_IP") if os.environ.get("SHOAL_POD_DIR") else None
    host = os.environ.get("LISTEN") or node_ip or "0.0.0.0"
    handler = type(f"{name}Handler", (Handler,), {"routes": routes})
    # A burst of new connections must queue, not be refused (the default
    # accept backlog is 5).
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True

    def drain(*_):
        # SIGTERM: answers go out with `Connection: close` (so clients stop
        # reusing this replica's connections) while Shoal takes it out of
        # the endpoints; then the server stops.
        global draining
        if not draining:
            draining = True
            log(f"{name}: draining for {DRAIN_SECONDS} s")
            threading.Timer(DRAIN_SECONDS, server.shutdown).start()

    signal.signal(signal.SIGTERM, drain)
    log(f"{name} listening on {host}:{port}")
    server.serve_forever()
