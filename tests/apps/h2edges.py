"""The HTTP/2 edge-case tests' apps (test_http2_edges.py), WSGI `app` and
ASGI `asgi`: the routes of h2app, and /headers (the Cookie and Host fields
the application sees, and the length of its X-Big field), /bighead?n=N (a
response field of N bytes), /start-then-read (ASGI: the response head
before the body is read, then each body chunk echoed), /raise (the
application raises) and /raise-later (it raises once the head and part of
the body are out)."""
import asyncio
from urllib.parse import parse_qs

import h2app


def _n(query):
    return int(parse_qs(query).get("n", ["0"])[0])


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/headers":
        body = ("cookie=%s|host=%s|x-big=%d" % (environ.get("HTTP_COOKIE"), environ.get("HTTP_HOST"),
                                                 len(environ.get("HTTP_X_BIG", "")))).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/bighead":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Big", "b" * _n(query))])
        return [b"big head"]
    if path == "/raise":
        raise RuntimeError("h2edges: raised on purpose")
    if path == "/raise-later":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _parts_then_raise()
    return h2app.app(environ, start_response)


def _parts_then_raise():
    yield b"part one"
    raise RuntimeError("h2edges: raised after the head")


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return await h2app.asgi(scope, receive, send)
    path, query = scope["path"], scope["query_string"].decode()
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    if path == "/headers":
        fields = dict((k.decode(), v.decode()) for k, v in scope["headers"])
        await send(start)
        await send({"type": "http.response.body",
                    "body": ("cookie=%s|host=%s|x-big=%d" % (fields.get("cookie"), fields.get("host"),
                                                              len(fields.get("x-big", "")))).encode()})
    elif path == "/bighead":
        start["headers"].append((b"x-big", b"b" * _n(query)))
        await send(start)
        await send({"type": "http.response.body", "body": b"big head"})
    elif path == "/start-then-read":
        await send(start)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                print("h2edges: disconnect heard", flush=True)
                return
            await send({"type": "http.response.body", "body": msg.get("body", b""), "more_body": True})
            if not msg.get("more_body"):
                await send({"type": "http.response.body", "body": b""})
                return
    elif path == "/raise":
        raise RuntimeError("h2edges: raised on purpose")
    elif path == "/raise-later":
        await send(start)
        await send({"type": "http.response.body", "body": b"part one", "more_body": True})
        await asyncio.sleep(0.2)
        raise RuntimeError("h2edges: raised after the head")
    else:
        await h2app.asgi(scope, receive, send)
