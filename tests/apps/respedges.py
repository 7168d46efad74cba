"""Responses at the edges, WSGI `app` and ASGI `asgi` with the same routes:
/own-headers (the application's own Server and Date fields), /longer (a
body past its Content-Length of 5), /shorter (a body short of its
Content-Length of 10), /close (ASGI: a Connection: close field of the
application's), /pathsend-device and /pathsend-short (ASGI: pathsend of
/dev/null, not a regular file; of this file with a Content-Length of 10),
/status?N (ASGI: an empty response with status N), /list-pairs and a WebSocket
to /ws-list-pairs (ASGI: header pairs as lists in a tuple)."""
import os

from _wsgicheck import checked

HERE = os.path.dirname(os.path.abspath(__file__))
OWN = [("Server", "own-server/1"), ("Date", "Mon, 01 Jan 2001 00:00:00 GMT")]


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/own-headers":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3"), *OWN])
        return [b"own"]
    if path == "/longer":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"01234", b"56789"]
    if path == "/shorter":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"01234"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


app = checked(_app)


async def asgi(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"] == "/ws-list-pairs":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": None, "headers": ([b"x-pair", b"list"],)})
        await send({"type": "websocket.send", "bytes": None, "text": "text, not bytes"})
        await send({"type": "websocket.close", "reason": None})
        return
    if scope["type"] != "http":
        return
    path = scope["path"]

    async def start(headers, status=200):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")] + [(k.encode(), v.encode()) for k, v in headers]})

    if path == "/own-headers":
        await start([("content-length", "3"), *OWN])
        await send({"type": "http.response.body", "body": b"own"})
    elif path == "/longer":
        await start([("content-length", "5")])
        await send({"type": "http.response.body", "body": b"01234", "more_body": True})
        await send({"type": "http.response.body", "body": b"56789"})
    elif path == "/shorter":
        await start([("content-length", "10")])
        await send({"type": "http.response.body", "body": b"01234"})
    elif path == "/close":
        await start([("content-length", "2"), ("connection", "close")])
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/status":
        await start([("content-length", "0")], status=int(scope["query_string"]))
        await send({"type": "http.response.body", "body": b""})
    elif path == "/list-pairs":
        await send({"type": "http.response.start", "status": 200,
                    "headers": ([b"content-type", b"text/plain"], [b"x-pair", b"list"], [b"content-length", b"2"])})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/pathsend-device":
        await start([])
        await send({"type": "http.response.pathsend", "path": os.devnull})
    elif path == "/pathsend-short":
        await start([("content-length", "10")])
        await send({"type": "http.response.pathsend", "path": os.path.join(HERE, "respedges.py")})
    else:
        await start([("content-length", "2")])
        await send({"type": "http.response.body", "body": b"ok"})
