"""Targets for the fault-injection sweep (test_faults.py), WSGI `app` and
ASGI `asgi`. GET /arm?N calls _gorgon._fault(N) (test builds only: 404
without it) and answers how many faults fired so far on this worker; the
other paths each go through a different part of the bridge, and answer
bodies the test checks (ASGI's /trailers also a trailer field, x-length:
the request body's length)."""
from gorgon import _gorgon

import _armed

fault = getattr(_gorgon, "_fault", None)
with open(__file__, "rb") as f:
    SENT = f.read()


class Closing:
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def close(self):
        pass


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/arm":
        return _armed.wsgi_arm(fault, environ, start_response)
    inp = environ["wsgi.input"]
    if path == "/lines":
        data = b"".join(inp.readlines())
    elif path == "/iter":
        data = b"".join(inp)
    else:
        data = inp.read(3) + inp.readline() + inp.read()
    headers = [("Content-Type", "text/plain"), ("X-Path", path)]
    if path in ("/list", "/lines", "/iter"):
        start_response("200 OK", headers)
        return [b"list:", data]
    if path == "/gen":
        start_response("200 OK", headers)
        return (part for part in (b"gen:", data))
    if path == "/closing":
        start_response("200 OK", headers)
        return Closing([b"closing:", data])
    if path == "/write":
        write = start_response("200 OK", headers)
        write(b"write:")
        write(data)
        return []
    if path == "/file":
        import io
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](io.BytesIO(b"file:" + data), 4)
    if path == "/sendfile":
        start_response("200 OK", headers + [("Content-Length", str(len(SENT)))])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))
    if path == "/exc-info":
        start_response("500 Oops", [("Content-Type", "text/plain")])
        try:
            raise KeyError("replaced")
        except KeyError:
            import sys
            start_response("200 OK", headers, sys.exc_info())
        return [b"exc-info:", data]
    start_response("404 Not Found", headers)
    return [b"unknown path\n"]


async def lifespan(receive, send):
    while True:
        msg = await receive()
        await send({"type": msg["type"] + ".complete"})
        if msg["type"] == "lifespan.shutdown":
            return


async def asgi_arm(scope, send):
    await _armed.asgi_arm(fault, scope, send)


async def request_body(receive):
    data = b""
    while True:
        msg = await receive()
        data += msg.get("body", b"")
        if not msg.get("more_body"):
            return data


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "websocket" and scope["path"] == "/ws-queue":
        # The first subprotocol offered; two messages that came in one read
        # (the second waits in the queue); then the server closes.
        await receive()  # connect
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][0]})
        texts = [(await receive()).get("text") for _ in range(2)]
        await send({"type": "websocket.send", "text": "+".join(texts)})
        await send({"type": "websocket.close", "code": 1000, "reason": "done"})
        return
    if scope["type"] == "websocket":
        await receive()  # connect
        await send({"type": "websocket.accept", "subprotocol": None, "headers": [(b"x-ws", b"1"), [b"x-ws-list", b"2"]]})
        msg = await receive()
        await send({"type": "websocket.send", "text": "ws:" + (msg.get("text") or "")})
        await send({"type": "websocket.send", "bytes": b"ws:" + (msg.get("bytes") or b"")})
        if scope["path"] == "/ws-client-closes":
            msg = await receive()
            await send({"type": "websocket.send", "text": "got:" + msg.get("text", "")})
            msg = await receive()
            assert msg["type"] == "websocket.disconnect", msg
            return
        await send({"type": "websocket.close", "code": 1000, "reason": "done"})
        return
    path = scope["path"]
    if path == "/arm":
        return await asgi_arm(scope, send)
    data = await request_body(receive)
    headers = [(b"content-type", b"text/plain"), [b"x-path", path.encode()]]  # a pair as a tuple, one as a list
    if path == "/pathsend":
        headers.append((b"content-length", str(len(SENT)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": path == "/trailers"})
    if path == "/pathsend":
        await send({"type": "http.response.pathsend", "path": __file__})
    elif path == "/trailers":
        await send({"type": "http.response.body", "body": b"trailers:" + data})
        await send({"type": "http.response.trailers", "headers": [(b"x-length", b"%d" % len(data))]})
    elif path == "/stream":
        await send({"type": "http.response.body", "body": b"stream:", "more_body": True})
        await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.body", "body": b"one:" + data})
