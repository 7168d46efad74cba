"""An ASGI app that checks, inside a request, what the garbage collector is
told the server's request objects hold: each object a request (and the
awaitable receive() returns) reports holding names it among its referrers,
so a reference cycle through them can be found and collected."""
import gc
import json


def held_by(obj):
    """The type names of what obj reports holding; each of them must list
    obj among its referrers."""
    held = gc.get_referents(obj)
    for v in held:
        assert any(r is obj for r in gc.get_referrers(v)), (type(obj).__name__, type(v).__name__)
    return sorted(type(v).__name__ for v in held)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    req = receive.__self__  # receive() is a method of the server's request object
    aw = receive()
    ready = held_by(aw)
    message = await aw
    gc.collect()  # a collection with the request alive walks it too
    report = {"request": held_by(req), "ready": ready, "body": message["body"].decode()}
    body = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
