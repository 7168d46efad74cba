"""Hand-written ASGI 3.0 reference app for tests/e2e/test_asgi_*.py (stdlib only).

`app` routes http and websocket scopes by path (see ROUTES / WS_ROUTES) and
supports lifespan: startup puts {"started": True, "n": 0, "boot_interp": id}
in the lifespan state. Other attributes are the same router with a different
lifespan behaviour or a different shape (for interface detection):

    startup_failed   lifespan.startup.failed with message "database unreachable"
    startup_raises   raises RuntimeError("boom in startup") on the lifespan scope
    no_lifespan      raises on any lifespan scope (an app that does not support it)
    shutdown_trouble starts; its shutdown fails as ASGI_TEST_SHUTDOWN says (failed,
                     raise, bad, return)
    startup_failed_silently  lifespan.startup.failed without a message
    lifespan_returns the lifespan coroutine returns at once
    callable_app     an instance whose async __call__ is the app
    hybrid           a plain function: WSGI (2 args) or ASGI (3 args, returns a coroutine)
    hybrid_marked    hybrid marked with inspect.markcoroutinefunction

Environment: ASGI_TEST_LOG=path gets "startup <interp>" / "shutdown <interp>"
lines from lifespan; ASGI_TEST_STARTUP_DELAY=seconds delays startup,
ASGI_TEST_SHUTDOWN_DELAY=seconds shutdown (before its line).
Routes that record what they saw take ?marker=PATH and append lines to it.
"""
import _interpreters
import asyncio
import hashlib
import inspect
import json
import os
import time
from urllib.parse import parse_qs

from _wsgicheck import meet, spin_cpu

CHUNK = 64 * 1024


def interp_id():
    return _interpreters.get_current()[0]


def record(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def query(scope):
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1"),
                                         keep_blank_values=True).items()}


async def send_body(send, body, status=200, ctype=b"text/plain", headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, obj, status=200):
    await send_body(send, json.dumps(obj).encode(), status, b"application/json")


def lat(b):
    return b.decode("latin-1")


# ---- http routes ------------------------------------------------------------

async def r_fixed(scope, receive, send):
    await send_body(send, b"Hello, world!\n")


async def r_scope(scope, receive, send):
    headers = scope["headers"]
    await send_json(send, {
        "keys": sorted(scope),
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": lat(scope["raw_path"]),
        "raw_path_is_bytes": type(scope["raw_path"]) is bytes,
        "query_string": lat(scope["query_string"]),
        "query_string_is_bytes": type(scope["query_string"]) is bytes,
        "root_path": scope["root_path"],
        "headers": [[lat(k), lat(v)] for k, v in headers],
        "headers_are_bytes": all(type(k) is bytes and type(v) is bytes for k, v in headers),
        "client": list(scope["client"]),
        "server": list(scope["server"]),
        "state": scope.get("state"),
        "extensions": sorted((scope.get("extensions") or {}).keys()),
        "interp": interp_id(),
    })


async def r_state(scope, receive, send):
    """Mutates its state: a per-request copy means the next request does not see it."""
    state = scope["state"]
    had = "set_by_request" in state
    state["set_by_request"] = True
    state["n"] = state.get("n", 0) + 1
    await send_json(send, {"had_request_key": had, "n": state["n"],
                           "started": state.get("started")})


async def r_upload(scope, receive, send):
    """Reads the body chunk by chunk; reports receive() calls and chunk sizes."""
    marker = query(scope).get("marker")
    calls = chunks = total = biggest = 0
    digest = hashlib.sha256()
    while True:
        msg = await receive()
        calls += 1
        if msg["type"] == "http.disconnect":
            record(marker, "disconnect total=%d" % total)
            return
        body = msg.get("body", b"")
        if body:
            if chunks == 0:
                record(marker, "first %d" % len(body))
            chunks += 1
            total += len(body)
            biggest = max(biggest, len(body))
            digest.update(body)
        if not msg.get("more_body", False):
            break
    record(marker, "done total=%d" % total)
    await send_json(send, {"calls": calls, "chunks": chunks, "total": total,
                           "max_chunk": biggest, "sha256": digest.hexdigest()})


async def read_body(receive):
    body = b""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        body += msg.get("body", b"")
        if not msg.get("more_body", False):
            return body


async def r_echo(scope, receive, send):
    body = await read_body(receive)
    await send_body(send, body or b"", ctype=b"application/octet-stream")


async def r_echo_head(scope, receive, send):
    """The headers (as seen once the whole body was received) and the body's digest."""
    body = await read_body(receive) or b""
    await send_json(send, {"headers": {lat(k): lat(v) for k, v in scope["headers"]},
                           "body_sha256": __import__("hashlib").sha256(body).hexdigest()})


async def r_wait_disconnect(scope, receive, send):
    """Reads the whole body, then waits in receive() for the client to leave."""
    marker = query(scope)["marker"]
    body = await read_body(receive)
    record(marker, "body %d" % len(body))
    msg = await receive()
    record(marker, "got %s" % msg["type"])


async def r_send_after_disconnect(scope, receive, send):
    marker = query(scope)["marker"]
    await read_body(receive)
    msg = await receive()  # pending until the client goes away
    record(marker, "got %s" % msg["type"])
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"x" * 100000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except BaseException as e:  # noqa: BLE001 - recorded for the test
        record(marker, "error %r" % (e,))
        raise
    record(marker, "sent ok")


async def r_stream(scope, receive, send):
    """?n chunks "chunk i\\n", ?delay seconds apart, no Content-Length (chunked);
    ?length=1 declares the Content-Length first."""
    q = query(scope)
    n = int(q.get("n", "3"))
    delay = float(q.get("delay", "0"))
    marker = q.get("marker")
    parts = [b"chunk %d\n" % i for i in range(n)]
    headers = [(b"content-type", b"text/plain")]
    if q.get("length"):
        headers.append((b"content-length", str(sum(map(len, parts))).encode()))
    record(marker, "interp %d" % interp_id())
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for i, p in enumerate(parts):
        await send({"type": "http.response.body", "body": p, "more_body": True})
        record(marker, "sent %d" % i)
        if delay:
            await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    record(marker, "finished")


async def r_big(scope, receive, send):
    """?chunks x 64 KiB, streamed; ?progress=PATH holds how many sends completed;
    ?yield=1 awaits asyncio.sleep(0) first (the handler no longer runs eagerly
    inside the server's dispatch when it starts sending)."""
    q = query(scope)
    if q.get("yield"):
        await asyncio.sleep(0)
    n = int(q.get("chunks", "16"))
    progress = q.get("progress")
    block = bytes(range(256)) * (CHUNK // 256)
    if progress:
        with open(progress, "w") as f:
            f.write("0")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    for i in range(n):
        await send({"type": "http.response.body", "body": block, "more_body": True})
        if progress:
            with open(progress + ".tmp", "w") as f:
                f.write(str(i + 1))
            os.replace(progress + ".tmp", progress)
    await send({"type": "http.response.body", "body": b""})


async def r_sleep(scope, receive, send):
    s = float(query(scope).get("s", "0.5"))
    start = time.time()
    await asyncio.sleep(s)
    await send_json(send, {"start": start, "end": time.time(), "interp": interp_id()})


async def r_tasks(scope, receive, send):
    """Three concurrent tasks, plus a background task that outlives the response."""
    marker = query(scope).get("marker")

    arrived = []
    all_in = asyncio.Event()

    async def work(i):
        # each task waits for the other two to have started: they meet only
        # if they run concurrently (the timeout only bounds a failure)
        arrived.append(i)
        if len(arrived) == 3:
            all_in.set()
        try:
            await asyncio.wait_for(all_in.wait(), 30)
        except asyncio.TimeoutError:
            return None
        return i * i

    async def background():
        await asyncio.sleep(0.3)
        record(marker, "background done")

    t0 = time.monotonic()
    results = await asyncio.gather(*(asyncio.create_task(work(i)) for i in range(3)))
    elapsed = time.monotonic() - t0
    bg = asyncio.create_task(background())
    r_tasks.keep = bg  # keep a reference (the loop holds tasks weakly)
    await send_json(send, {"results": results, "elapsed": elapsed})


async def r_tiny(scope, receive, send):
    """?big= bytes in one body message, then ?n= messages of 6 bytes ("%05d\\n")."""
    q = query(scope)
    big, n = int(q["big"]), int(q["n"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"b" * big, "more_body": True})
    for i in range(n):
        await send({"type": "http.response.body", "body": b"%05d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def r_forever_task(scope, receive, send):
    """Starts a task that never ends by itself; ?marker= gets "cancelled"
    when it is cancelled (at the worker's end)."""
    marker = query(scope).get("marker")

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            record(marker, "cancelled")
            raise

    r_forever_task.keep = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await send_body(send, b"started\n")


async def r_raise_before(scope, receive, send):
    raise ValueError("raised before http.response.start")


async def r_raise_after(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial ", "more_body": True})
    raise ValueError("raised after http.response.start")


async def r_no_response(scope, receive, send):
    return None


async def r_partial(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial ", "more_body": True})


async def r_bad_message(scope, receive, send):
    await send({"type": "http.response.start", "status": "200 OK"})


async def r_pathsend(scope, receive, send):
    if "http.response.pathsend" not in scope.get("extensions", {}):
        await send_body(send, b"pathsend not advertised\n", 501)
        return
    path = query(scope)["path"]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.pathsend", "path": path})


async def r_cpu(scope, receive, send):
    ms = float(query(scope).get("ms", "100"))
    record(query(scope).get("marker"), "started")
    start = time.time()
    spin_cpu(ms)
    end = time.time()
    iid = interp_id()
    await send_json(send, {"start": start, "end": end, "interp": iid, "tid": __import__("threading").get_native_id(),
                           "gil": _interpreters.get_config(iid).gil})


async def r_meet(scope, receive, send):
    """Waits holding the GIL, event loop and all, for n requests to be running
    at once (see _wsgicheck.meet)."""
    q = query(scope)
    met, waited = meet(q["key"], int(q.get("n", "2")), float(q.get("timeout", "30")))
    iid = interp_id()
    await send_json(send, {"met": met, "waited": waited, "interp": iid,
                           "tid": __import__("threading").get_native_id(),
                           "gil": _interpreters.get_config(iid).gil})


async def r_tls(scope, receive, send):
    """The scope's "tls" extension (ASGI TLS extension), or null."""
    await send_json(send, {"scheme": scope["scheme"], "tls": (scope.get("extensions") or {}).get("tls")})


ROUTES = {
    "/fixed": r_fixed, "/state": r_state, "/upload": r_upload, "/echo": r_echo, "/echo-head": r_echo_head,
    "/wait-disconnect": r_wait_disconnect, "/send-after-disconnect": r_send_after_disconnect,
    "/stream": r_stream, "/big": r_big, "/sleep": r_sleep, "/tasks": r_tasks, "/forever-task": r_forever_task,
    "/tiny": r_tiny,
    "/raise-before": r_raise_before, "/raise-after": r_raise_after,
    "/no-response": r_no_response, "/partial": r_partial, "/bad-message": r_bad_message,
    "/pathsend": r_pathsend, "/cpu": r_cpu, "/meet": r_meet, "/tls": r_tls,
}


# ---- websocket routes ---------------------------------------------------------

async def ws_echo(scope, receive, send):
    """Echoes text and bytes. Text commands: "close-4000" (app closes with 4000
    "bye"), "close-long" (4001 with a 200-byte reason), "subprotocols" (sends them as JSON). The disconnect code goes to ?marker."""
    marker = query(scope).get("marker")
    msg = await receive()
    assert msg["type"] == "websocket.connect", msg
    chosen = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            record(marker, "disconnect %s" % msg.get("code"))
            return
        text = msg.get("text")
        if text == "close-4000":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
            return
        if text == "close-long":  # a reason over the 123 bytes a close frame holds
            await send({"type": "websocket.close", "code": 4001, "reason": "\u00e9" * 100})
            return
        if text == "subprotocols":
            await send({"type": "websocket.send", "text": json.dumps(scope["subprotocols"])})
        elif text == "scope":
            await send({"type": "websocket.send", "text": json.dumps({
                "type": scope["type"], "scheme": scope["scheme"], "path": scope["path"],
                "query_string": lat(scope["query_string"]),
                "extensions": sorted((scope.get("extensions") or {}).keys()),
                "asgi": scope["asgi"], "http_version": scope.get("http_version")})})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


async def ws_deny(scope, receive, send):
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]})
    await send({"type": "websocket.http.response.body", "body": b"nope, not you\n"})


async def ws_reject(scope, receive, send):
    msg = await receive()
    assert msg["type"] == "websocket.connect", msg
    await send({"type": "websocket.close", "code": 1000})


WS_ROUTES = {"/ws/echo": ws_echo, "/ws/deny": ws_deny, "/ws/reject": ws_reject}



# How an app can end a WebSocket without a websocket.close of its own.
async def ws_return_open(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "accepted"})


async def ws_raise_open(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "accepted"})
    raise RuntimeError("raised with the WebSocket open")


async def ws_return_before_accept(scope, receive, send):
    await receive()


async def ws_raise_before_accept(scope, receive, send):
    raise RuntimeError("raised before accepting the WebSocket")


WS_ROUTES.update({"/ws/return-open": ws_return_open, "/ws/raise-open": ws_raise_open,
                  "/ws/return-before-accept": ws_return_before_accept,
                  "/ws/raise-before-accept": ws_raise_before_accept})

# Backpressure both ways (test_asgi_websocket_backpressure.py).
async def ws_flood(scope, receive, send):
    """Sends ?n= binary messages of ?size= bytes (message i: its index in 4
    bytes, then bytes of value i % 256), appending "sent i" to ?marker= after
    each send returns; then the text "done" and a close with 1000."""
    q = query(scope)
    n, size, marker = int(q["n"]), int(q["size"]), q.get("marker")
    await receive()
    await send({"type": "websocket.accept"})
    for i in range(n):
        await send({"type": "websocket.send", "bytes": i.to_bytes(4, "big") + bytes([i % 256]) * (size - 4)})
        record(marker, "sent %d" % i)
    await send({"type": "websocket.send", "text": "done"})
    await send({"type": "websocket.close", "code": 1000})


async def ws_late_reader(scope, receive, send):
    """Accepts, then does not receive until the file ?go= exists; then counts
    the messages and their bytes up to the text "end" and sends "COUNT BYTES SHA256"."""
    go = query(scope)["go"]
    await receive()
    await send({"type": "websocket.accept"})
    while not os.path.exists(go):
        await asyncio.sleep(0.02)
    count, total, digest = 0, 0, hashlib.sha256()
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect" or msg.get("text") == "end":
            break
        data = msg.get("bytes") or b""
        count, total = count + 1, total + len(data)
        digest.update(data)
    await send({"type": "websocket.send", "text": "%d %d %s" % (count, total, digest.hexdigest())})
    await send({"type": "websocket.close", "code": 1000})


WS_ROUTES.update({"/ws/flood": ws_flood, "/ws/late-reader": ws_late_reader})


async def not_found(scope, receive, send):
    if scope["type"] == "websocket":
        await send({"type": "websocket.close"})
    else:
        await send_body(send, b"not found\n", 404)


# ---- lifespan variants ----------------------------------------------------------

async def lifespan_ok(scope, receive, send):
    log = os.environ.get("ASGI_TEST_LOG")
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            delay = float(os.environ.get("ASGI_TEST_STARTUP_DELAY") or 0)
            if delay:
                await asyncio.sleep(delay)
            scope["state"]["started"] = True
            scope["state"]["n"] = 0
            scope["state"]["boot_interp"] = interp_id()
            record(log, "startup %d" % interp_id())
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            delay = float(os.environ.get("ASGI_TEST_SHUTDOWN_DELAY") or 0)
            if delay:  # closing a database pool, say
                await asyncio.sleep(delay)
            record(log, "shutdown %d" % interp_id())
            await send({"type": "lifespan.shutdown.complete"})
            return


async def lifespan_failed(scope, receive, send):
    msg = await receive()
    assert msg["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


async def lifespan_raises(scope, receive, send):
    await receive()
    raise RuntimeError("boom in startup")


async def lifespan_shutdown_trouble(scope, receive, send):
    """Starts; at shutdown does what ASGI_TEST_SHUTDOWN says: "failed" sends
    lifespan.shutdown.failed, "raise" raises, "return" returns without a word,
    "bad" sends a message type lifespan does not have."""
    how = os.environ.get("ASGI_TEST_SHUTDOWN")
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    if how == "failed":
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush the cache"})
    elif how == "raise":
        raise RuntimeError("boom in shutdown")
    elif how == "bad":
        await send({"type": "lifespan.shutdown.done"})


async def lifespan_startup_failed_silently(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.failed"})


async def lifespan_returns_at_once(scope, receive, send):
    return None


async def lifespan_unsupported(scope, receive, send):
    raise ValueError("only http and websocket here, not %r" % scope["type"])


def make(lifespan):
    async def application(scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            return await lifespan(scope, receive, send)
        routes = WS_ROUTES if kind == "websocket" else ROUTES
        path = scope["path"]
        handler = routes.get(path)
        if handler is None and (path.startswith("/scope") or path == "*"):
            handler = r_scope
        return await (handler or not_found)(scope, receive, send)
    return application


app = make(lifespan_ok)
startup_failed = make(lifespan_failed)
startup_raises = make(lifespan_raises)
no_lifespan = make(lifespan_unsupported)
shutdown_trouble = make(lifespan_shutdown_trouble)
startup_failed_silently = make(lifespan_startup_failed_silently)
lifespan_returns = make(lifespan_returns_at_once)


class CallableApp:
    async def __call__(self, scope, receive, send):
        return await app(scope, receive, send)


callable_app = CallableApp()


def _hybrid(a, b, c=None):
    """WSGI when called with 2 arguments, ASGI (returns a coroutine) with 3."""
    if c is None:
        b("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"wsgi\n"]

    async def run():
        if a["type"] == "lifespan":
            return await lifespan_ok(a, b, c)
        await send_body(c, b"asgi\n")
    return run()


def hybrid(a, b, c=None):
    return _hybrid(a, b, c)


def hybrid_marked(a, b, c=None):
    return _hybrid(a, b, c)


inspect.markcoroutinefunction(hybrid_marked)
