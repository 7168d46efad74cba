"""gorgon.shared from inside the workers: counters, compare-and-set loops,
TTL, round trips of every shareable type, type errors, the size bound.

Each endpoint is a plain WSGI function; shared_app.py routes to them and
wraps them in wsgiref.validate.
"""
import os
import time

import gorgon
from _wsgicheck import interp_id, json_response, query

shared = gorgon.shared


def rendezvous(key, parties, timeout=10.0):
    """Waits until `parties` requests (one per worker) have arrived."""
    shared.incr(key)
    deadline = time.monotonic() + timeout
    while shared.get(key) < parties:
        if time.monotonic() > deadline:
            raise RuntimeError("rendezvous %r: only %r of %d arrived" % (key, shared.get(key), parties))
        time.sleep(0.0001)


def _arrive(q):
    if "mark" in q:
        shared.set(q["mark"], gorgon.worker_id)
    if "rv" in q:
        rendezvous(q["rv"], int(q.get("parties", 2)))


def incr(environ, start_response):
    q = query(environ)
    _arrive(q)
    key, n = q["key"], int(q["n"])
    start = time.time()
    last = None
    for _ in range(n):
        last = shared.incr(key)
    return json_response(start_response, {"worker": gorgon.worker_id, "start": start,
                                          "end": time.time(), "last": last})


def cas(environ, start_response):
    q = query(environ)
    _arrive(q)
    key, n = q["key"], int(q["n"])
    retries = 0
    start = time.time()
    for _ in range(n):
        while True:
            old = shared.get(key)
            if shared.cas(key, old, (old or 0) + 1):
                break
            retries += 1
    return json_response(start_response, {"worker": gorgon.worker_id, "start": start,
                                          "end": time.time(), "retries": retries})


def get(environ, start_response):
    q = query(environ)
    key = q["key"]
    return json_response(start_response, {"worker": gorgon.worker_id, "value": shared.get(key),
                                          "present": key in shared, "listed": key in shared.keys()})


def set_(environ, start_response):
    q = query(environ)
    ttl = float(q["ttl"]) if "ttl" in q else None
    shared.set(q["key"], int(q["value"]), ttl=ttl)
    return json_response(start_response, {"worker": gorgon.worker_id})


def samples():
    """Every shareable type, nested; built afresh in each interpreter."""
    big = 3 ** 200
    return {
        "none": None, "true": True, "false": False, "zero": 0, "neg": -7,
        "i64max": 2 ** 63 - 1, "i64min": -2 ** 63, "big": big, "negbig": -big,
        "just_over": 2 ** 63, "float": 1.25, "inf": float("inf"), "negzero": -0.0,
        "str": "héllo wörld ✓", "surrogate": "a\udc80b", "empty_str": "",
        "bytes": bytes(range(256)), "empty_tuple": (),
        "nested": (1, (2, (3, (big, "x", b"y", (None, True, 2.5, ()))))),
        "deep": (((((((((((("deep",),),),),),),),),),),),),
        b"bytes-key": "value under a bytes key",
    }


def _same(a, b):
    """Equal and of the same type, all the way down (1 == True would not do)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a == 0:
        return str(a) == str(b)
    return a == b


def check_roundtrip(prefix):
    """What this interpreter reads back differs from what samples() builds."""
    bad = []
    for key, want in samples().items():
        k = prefix + key if isinstance(key, str) else prefix.encode() + key
        got = shared.get(k, "<missing>")
        if not _same(got, want):
            bad.append("%r: got %r" % (key, got))
    return bad


def roundtrip(environ, start_response):
    q = query(environ)
    prefix = q["prefix"]
    if q.get("phase") == "set":
        for key, value in samples().items():
            shared.set(prefix + key if isinstance(key, str) else prefix.encode() + key, value)
    return json_response(start_response, {"worker": gorgon.worker_id, "interp": interp_id(),
                                          "bad": check_roundtrip(prefix)})


class MyInt(int):
    pass


class MyStr(str):
    pass


def _gen():
    yield 1


def unsupported():
    """(value, the type name its TypeError must give)"""
    import collections
    Point = collections.namedtuple("Point", "x y")
    return [([1], "list"), ({"a": 1}, "dict"), ({1}, "set"), (frozenset([1]), "frozenset"),
            (bytearray(b"x"), "bytearray"), (memoryview(b"x"), "memoryview"), (1j, "complex"),
            (object(), "object"), (int, "type"), (len, "builtin_function_or_method"),
            (_gen(), "generator"), (range(3), "range"), (Ellipsis, "ellipsis"),
            (NotImplemented, "NotImplementedType"), (ValueError("x"), "ValueError"),
            (MyInt(3), "MyInt"), (MyStr("s"), "MyStr"), (Point(1, 2), "Point"),
            ((1, [2]), "list"), ((1, ("a", {3})), "set")]


def types(environ, start_response):
    failures = []

    def expect_type_error(what, fn, name):
        try:
            fn()
        except TypeError as e:
            if name not in str(e):
                failures.append("%s: message %r does not name %r" % (what, str(e), name))
        except Exception as e:  # noqa: BLE001 - reported
            failures.append("%s: %r instead of TypeError" % (what, e))
        else:
            failures.append("%s: no TypeError" % what)

    ch = gorgon.channel("types-check")
    for v, name in unsupported():
        expect_type_error("set %r" % (v,), lambda: shared.set("k", v), name)
        expect_type_error("cas %r" % (v,), lambda: shared.cas("k", None, v), name)
        expect_type_error("send %r" % (v,), lambda: ch.send_nowait(v), name)
    for k in (1, None, 1.5, ("a",), MyStr("s"), bytearray(b"k")):
        name = type(k).__name__
        expect_type_error("get key %r" % (k,), lambda: shared.get(k), name)
        expect_type_error("set key %r" % (k,), lambda: shared.set(k, 1), name)
        expect_type_error("in key %r" % (k,), lambda: k in shared, name)
        expect_type_error("delete key %r" % (k,), lambda: shared.delete(k), name)
    expect_type_error("incr delta float", lambda: shared.incr("n", 1.5), "float")
    shared.set("types-str", "s")
    expect_type_error("incr on a str", lambda: shared.incr("types-str"), "str")
    failures += [] if "k" not in shared else ["a failed set stored something"]
    return json_response(start_response, {"worker": gorgon.worker_id, "failures": failures})


def fill(environ, start_response):
    """Stores `size`-byte values until the bound refuses one; checks that
    everything stored before is intact."""
    q = query(environ)
    prefix, size = q["prefix"], int(q["size"])
    stored, message = 0, None
    while True:
        try:
            shared.set("%s%d" % (prefix, stored), bytes([stored % 256]) * size)
        except MemoryError as e:
            message = str(e)
            break
        stored += 1
        if stored > 100000:
            break
    intact = all(shared.get("%s%d" % (prefix, i)) == bytes([i % 256]) * size for i in range(stored))
    # A failed replacement by a bigger value keeps the old one.
    replaced = None
    if stored:
        try:
            shared.set("%s0" % prefix, b"z" * (size * 50))
            replaced = "stored"
        except MemoryError:
            replaced = "kept" if shared.get("%s0" % prefix) == bytes([0]) * size else "lost"
    return json_response(start_response, {"worker": gorgon.worker_id, "stored": stored,
                                          "message": message, "intact": intact,
                                          "replaced": replaced, "stats": shared.stats()})


def clear(environ, start_response):
    shared.clear()
    return json_response(start_response, {"worker": gorgon.worker_id, "len": len(shared)})


def facts(environ, start_response):
    return json_response(start_response, {"worker_id": gorgon.worker_id,
                                          "worker_count": gorgon.worker_count,
                                          "mode": gorgon.mode, "interp": interp_id()})


def try_(environ, start_response):
    """One incr (or, with send=NAME, one send on that channel) whose failure
    is reported, not raised: with --shared-url and no Redis, the app sees
    gorgon.Unavailable, a ConnectionError."""
    q = query(environ)
    start = time.monotonic()
    try:
        if "send" in q:
            gorgon.channel(q["send"]).send_nowait(1)
            value = None
        else:
            value = shared.incr(q["key"])
        outcome = "ok"
    except gorgon.Unavailable as e:
        outcome = "unavailable: %s (ConnectionError: %s)" % (e, isinstance(e, ConnectionError))
        value = None
    return json_response(start_response, {"worker": gorgon.worker_id, "outcome": outcome, "value": value,
                                          "elapsed": time.monotonic() - start, "pid": os.getpid()})


ROUTES = {"incr": incr, "cas": cas, "get": get, "set": set_, "roundtrip": roundtrip,
          "types": types, "fill": fill, "clear": clear, "facts": facts, "try": try_}
