"""The app of test_h2_remote_rare.py (ASGI `asgi`): /who answers the
worker's id (gorgon.worker_id); /park?key=K prints "park K in worker N",
then waits until /release?key=K (answers "released K in worker N") or the
client goes away (prints "park K: disconnect in worker N")."""
import asyncio
from urllib.parse import parse_qs

import gorgon


def _key(scope):
    return parse_qs(scope["query_string"].decode()).get("key", [""])[0]


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
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path == "/park":
        body = await _park(_key(scope), receive)
        if body is None:
            return
    elif path == "/release":
        gorgon.shared.set(_key(scope), 1)
        body = b"released"
    else:
        body = str(gorgon.worker_id).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
