"""A Flask app whose workers share a cache and a rate limiter through gorgon.shared.

    gorgon app:app --chdir examples/flask_shared --workers 4

Every worker is its own interpreter, so module globals are per worker; what
must be seen by all of them (a cached page, a client's request count, a
running maximum) goes into gorgon.shared, one store for the whole process.

    /              a page whose costly part is computed once for all workers,
                   then served from the cache for 30 s (header X-Cache)
    /api/limited   at most 5 requests per 10 s per client address, counted
                   across all workers; 429 with Retry-After beyond that
    /api/hits      a process-wide hit counter (atomic incr)
    /api/max?n=7   a running maximum kept with a compare-and-set loop
    /stats         what the store holds, and which worker answered
"""

import functools
import hashlib
import time

from flask import Flask, jsonify, request

import gorgon

app = Flask(__name__)
shared = gorgon.shared


def shared_cache(ttl):
    """Caches a view's text in gorgon.shared for ttl seconds, keyed by path and
    query: the first worker to miss computes it, every worker then reuses it."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = "cache:" + request.full_path
            body = shared.get(key)
            if body is not None:
                return body, 200, {"X-Cache": "hit"}
            body = view(*args, **kwargs)
            shared.set(key, body, ttl=ttl)  # str in, a fresh str out in each worker
            return body, 200, {"X-Cache": "miss"}

        return wrapper

    return decorate


class RateLimiter:
    """Fixed window: at most `limit` calls per `window` seconds for each key,
    counted atomically across all workers. Each window's counter is a key of
    its own that expires by itself, so nothing needs cleaning up."""

    def __init__(self, limit, window):
        self.limit, self.window = limit, window

    def hit(self, who):
        """(allowed, remaining, seconds until the window resets)"""
        now = time.time()
        number = int(now // self.window)
        count = shared.incr("ratelimit:%s:%d" % (who, number), ttl=2 * self.window)
        reset = (number + 1) * self.window - now
        return count <= self.limit, max(0, self.limit - count), reset


def rate_limited(limiter):
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            allowed, remaining, reset = limiter.hit(request.remote_addr)
            headers = {"X-RateLimit-Remaining": str(remaining)}
            if not allowed:
                headers["Retry-After"] = str(max(1, round(reset)))
                return jsonify(error="too many requests"), 429, headers
            return view(*args, **kwargs), 200, headers

        return wrapper

    return decorate


def costly_page():
    digest = "x"
    for _ in range(200_000):  # stands for a slow query or a big template
        digest = hashlib.sha256(digest.encode()).hexdigest()
    return digest


@app.get("/")
@shared_cache(ttl=30)
def index():
    return "<h1>gorgon + Flask</h1><p>computed once by worker %s: %s</p>\n" % (
        gorgon.worker_id, costly_page())


@app.get("/api/limited")
@rate_limited(RateLimiter(limit=5, window=10))
def limited():
    return jsonify(ok=True, worker=gorgon.worker_id)


@app.get("/api/hits")
def hits():
    return jsonify(hits=shared.incr("hits"), worker=gorgon.worker_id)


@app.get("/api/max")
def running_max():
    n = request.args.get("n", type=int, default=0)
    while True:  # compare-and-set loop: retry if another worker got in between
        current = shared.get("max")  # a missing key reads as None, and cas treats it so
        if current is not None and current >= n:
            break
        if shared.cas("max", current, n):
            current = n
            break
    return jsonify(max=current, worker=gorgon.worker_id)


@app.get("/stats")
def stats():
    return jsonify(worker=gorgon.worker_id, workers=gorgon.worker_count, mode=gorgon.mode,
                   keys=sorted(k for k in shared.keys() if isinstance(k, str)), store=shared.stats())
