"""The HTTP/2 tests' apps, WSGI (`app`) and ASGI (`asgi`), with the same
routes: /proto (the protocol the server reports), /echo (the body back, with
its length), /big?n=N (N bytes), /slow?s=S (answers after S seconds),
/who (the worker's interpreter id, to see streams spread), /meet?key=K&n=N
(the interpreter id, once N requests have met: tests/apps/_wsgicheck.py),
/hold?s=S (the interpreter id after S seconds), /counted?n=N&key=K (N bytes
in 16 KiB pieces, each counted in gorgon.shared[K] as it is produced) and
/count?key=K (that count). ASGI only: /upload (reads the whole body, answers
"<interpreter id> <length> <sha256>"; with ?first=1 it first sends a line
with the interpreter id before it reads any of the body, with
?meet=K&n=N&timeout=T that line is /meet's answer, with ?wait=K it reads
nothing until /release?key=K)."""
import asyncio
import hashlib
import threading
import time
from urllib.parse import parse_qs


def _n(query, key, default):
    try:
        return type(default)(parse_qs(query)[key][0])
    except (KeyError, ValueError):
        return default


def _who():
    try:
        import _interpreters
        return str(_interpreters.get_current()[0])
    except Exception:
        return str(threading.get_ident())


def _meet(query):
    from _wsgicheck import meet
    met, _ = meet(_n(query, "key", ""), _n(query, "n", 2), _n(query, "timeout", 60.0))
    return ("%s %s" % (_who(), "met" if met else "alone")).encode()


def _counted(query):
    import gorgon
    n, key = _n(query, "n", 1 << 20), _n(query, "key", "")
    data = _pattern(n)
    for i in range(0, n, 16384):
        piece = data[i:i + 16384]
        gorgon.shared.incr(key, len(piece))
        yield piece


def _count(query):
    import gorgon
    return str(gorgon.shared.get(_n(query, "key", ""), 0)).encode()


def _pattern(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/proto":
        body = environ["SERVER_PROTOCOL"].encode()
    elif path == "/echo":
        length = environ.get("CONTENT_LENGTH")
        data = environ["wsgi.input"].read(int(length)) if length else environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("X-Length", str(len(data)))])
        return [data]
    elif path == "/big":
        n = _n(query, "n", 1 << 20)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        data = _pattern(n)
        return (data[i:i + 65536] for i in range(0, n, 65536))
    elif path == "/slow":
        time.sleep(_n(query, "s", 0.5))
        body = b"slow done"
    elif path == "/who":
        body = _who().encode()
    elif path == "/meet":
        body = _meet(query)
    elif path == "/hold":
        time.sleep(_n(query, "s", 0.5))
        body = _who().encode()
    elif path == "/count":
        body = _count(query)
    elif path == "/counted":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("X-Who", _who())])
        return _counted(query)
    else:
        body = b"hello h2"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                              ("Connection", "keep-alive")])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, query = scope["path"], scope["query_string"].decode()
    headers = [(b"content-type", b"text/plain")]
    if path == "/proto":
        body = scope["http_version"].encode()
    elif path == "/echo":
        data = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            data += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})
        return
    elif path == "/big":
        n = _n(query, "n", 1 << 20)
        data = _pattern(n)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(0, n, 65536):
            await send({"type": "http.response.body", "body": data[i:i + 65536], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    elif path == "/disconnect":
        # Waits for the client to go away; the log line proves it was heard.
        print("h2app: disconnect awaited in %s" % _who(), flush=True)
        msg = await receive()
        while msg["type"] != "http.disconnect":
            msg = await receive()
        print("h2app: disconnect heard in %s" % _who(), flush=True)
        return
    elif path == "/upload":
        if _n(query, "meet", ""):
            first = _meet(query.replace("meet=", "key=")) + b"\n"
        else:
            first = (_who() + "\n").encode() if _n(query, "first", 0) else b""
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        if _n(query, "wait", ""):
            import gorgon
            while not gorgon.shared.get(_n(query, "wait", "")):
                await asyncio.sleep(0.01)
        digest, n = hashlib.sha256(), 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            digest.update(msg.get("body", b""))
            n += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.body", "body": ("%s %d %s" % (_who(), n, digest.hexdigest())).encode()})
        return
    elif path == "/counted":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-who", _who().encode())]})
        for piece in _counted(query):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    elif path == "/trailers":
        # Response trailers where the scope offers them (HTTP/1.1, HTTP/2),
        # in two messages; the request's own trailers are not the app's
        # business. ?length=1: with a Content-Length of the app's own.
        offered = "http.response.trailers" in scope.get("extensions", {})
        while (await receive()).get("more_body"):
            pass
        if _n(query, "length", 0):
            headers = headers + [(b"content-length", b"13")]
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": offered})
        await send({"type": "http.response.body", "body": b"with trailers" if offered else b"no trailers",
                    "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        if offered:
            await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b"abc")],
                        "more_trailers": True})
            await send({"type": "http.response.trailers", "headers": [(b"x-count", b"2"),
                                                                      (b"connection", b"close")]})
        return
    elif path == "/slow":
        await asyncio.sleep(_n(query, "s", 0.5))
        body = b"slow done"
    elif path == "/who":
        body = _who().encode()
    elif path == "/meet":
        body = _meet(query)
    elif path == "/hold":
        await asyncio.sleep(_n(query, "s", 0.5))
        body = _who().encode()
    elif path == "/count":
        body = _count(query)
    elif path == "/release":
        import gorgon
        gorgon.shared.set(_n(query, "key", ""), 1)
        body = b"released"
    else:
        body = b"hello h2"
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
