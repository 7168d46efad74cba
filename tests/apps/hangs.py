"""Handlers that run too long, for --timeout: pure-Python loops (interrupted
between bytecodes), time.sleep (stuck in C), and a response that began.
WSGI `app` and ASGI `asgi`; every answer says who served it:
"<worker_id> <interpreter id> <pid>"."""
import asyncio
import os
import time

import gorgon
from _wsgicheck import checked, interp_id, query


def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def who():
    return ("%s %d %d" % (gorgon.worker_id, interp_id(), os.getpid())).encode()


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    seconds = float(query(environ).get("s", "10"))
    if path == "/spin":
        spin(seconds)
    elif path == "/sleep":
        time.sleep(seconds)
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return streamed(seconds)
    body = who()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def streamed(seconds):
    yield b"began "
    spin(seconds)
    yield b"ended"


app = checked(_app)


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    qs = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    seconds = float(qs.get("s", "10"))
    if path == "/spin":
        spin(seconds)            # blocks the event loop, in Python
    elif path == "/sleep":
        time.sleep(seconds)      # blocks the event loop, in C
    elif path == "/wait":
        await asyncio.sleep(seconds)  # the loop runs on; only this request waits
    elif path == "/await-spin":
        await asyncio.sleep(0)
        spin(seconds)            # blocks the loop after a first wait
    elif path == "/background-spin":
        # Answered at once; a callback then blocks the loop with no request under way.
        asyncio.get_running_loop().call_later(0.2, spin, seconds)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"began ", "more_body": True})
        await asyncio.sleep(0)
        spin(seconds)            # the response began, then blocks the loop
        await send({"type": "http.response.body", "body": b"ended"})
        return
    body = who()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
