"""Targets for src/http's fault-injection sweeps (test_http_faults.py),
WSGI `app` and ASGI `asgi`. GET /arm?N calls _gorgon._fault_http(N) (test
builds only: 404 without it), which makes the N-th failing site of the
next connection the server accepts fail, and answers how many faults fired
so far in the process. /echo answers "echo:" and the body (/slow-echo
the same after 20 ms, long enough for an HTTP/2 stream to be handed to
another worker; ASGI's spends 2 ms of them before its first await); /big answers BIG (several output blocks), WSGI's /write three times BIG
through write(); ASGI's /trailers
sends two trailer fields after "trailers" (HTTP/2), and its WebSocket
echoes each message."""
import asyncio
import time

from gorgon import _gorgon

from _armed import asgi_arm, request_body, wsgi_arm

fault = getattr(_gorgon, "_fault_http", None)
BIG = b"".join(b"%07d\n" % i for i in range(3000))  # 24,000 bytes




def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/arm":
        return wsgi_arm(fault, environ, start_response)
    data = environ["wsgi.input"].read()
    if path == "/slow-echo":
        time.sleep(0.02)
    if path == "/big":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [BIG[:10000], BIG[10000:]]
    if path == "/write":  # write() past --write-high-water waits for the client
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(3):
            write(BIG)
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"echo:", data]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo:" + (msg.get("text") or "")})
    path = scope["path"]
    if path == "/arm":
        return await asgi_arm(fault, scope, send)
    if path == "/slow-echo":
        # Work before the first await, in the call that starts the task:
        # the loop's streams stay worth handing to another worker.
        time.sleep(0.002)
    data = await request_body(receive)
    if data is None:
        return
    if path == "/slow-echo":
        await asyncio.sleep(0.02)
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    if path == "/trailers":
        start["trailers"] = True
        await send(start)
        await send({"type": "http.response.body", "body": b"echo:" + data})
        await send({"type": "http.response.trailers", "headers": [(b"x-one", b"1"), (b"x-two", b"2")]})
        return
    await send(start)
    if path == "/big":
        await send({"type": "http.response.body", "body": BIG[:10000], "more_body": True})
        await send({"type": "http.response.body", "body": BIG[10000:]})
        return
    await send({"type": "http.response.body", "body": b"echo:" + data})
