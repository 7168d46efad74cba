"""The apps of test_h2_remote_rare.py. ASGI `asgi`: /who answers the
worker's id (gorgon.worker_id); /park?key=K prints "park K in worker N",
then waits until /release?key=K (answers "released K in worker N") or the
client goes away (prints "park K: disconnect in worker N"); /block?s=S
prints "block in worker N", then holds its worker's loop S seconds
(time.sleep before the first await). WSGI `app`:
/who the same; /hold?key=K&s=S prints "hold K in worker N", then answers
"held K in worker N" after S seconds."""
import asyncio
import time
from urllib.parse import parse_qs

import gorgon


def _arg(query, name, default=""):
    return parse_qs(query).get(name, [default])[0]


def _key(scope):
    return _arg(scope["query_string"].decode(), "key")


def app(environ, start_response):
    body = str(gorgon.worker_id).encode()
    if environ["PATH_INFO"] == "/hold":
        query = environ.get("QUERY_STRING", "")
        key = _arg(query, "key")
        print("hold %s in worker %s" % (key, gorgon.worker_id), flush=True)
        time.sleep(float(_arg(query, "s", "1")))
        body = ("held %s in worker %s" % (key, gorgon.worker_id)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


async def _park(key, receive):
    me = gorgon.worker_id
    print("park %s in worker %s" % (key, me), flush=True)
    heard = asyncio.ensure_future(receive())  # the request (no body), then the disconnect
    try:
        while not gorgon.shared.get(key):
            if heard.done():
                if heard.result()["type"] == "http.disconnect":
                    print("park %s: disconnect in worker %s" % (key, me), flush=True)
                    return None
                heard = asyncio.ensure_future(receive())
            await asyncio.sleep(0.01)
    finally:
        heard.cancel()
    return ("released %s in worker %s" % (key, me)).encode()


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan: served without one (--lifespan auto)
    path = scope["path"]
    if path == "/park":
        body = await _park(_key(scope), receive)
        if body is None:
            return
    elif path == "/block":
        print("block in worker %s" % gorgon.worker_id, flush=True)
        time.sleep(float(_arg(scope["query_string"].decode(), "s", "1")))
        body = b"blocked"
    elif path == "/release":
        gorgon.shared.set(_key(scope), 1)
        body = b"released"
    else:
        body = str(gorgon.worker_id).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
