"""An ASGI app for the fault sweep (test_faults_h2_tls.py) that carries on
when a send fails: each MemoryError of a send is caught and the next message
sent anyway, so that the server, not the app, must keep a response that
failed half-way from going on (a cut, never bytes after a partial head).
The body is made of the parts b"a:", b"b:", the request body; GET /arm?N
arms the fault as in faults.py."""
from faults import arm


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/arm":
        body = arm(scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 200 if body else 404, "headers": []})
        await send({"type": "http.response.body", "body": body or b"no fault injection in this build\n"})
        return
    data = b""
    while True:
        msg = await receive()
        data += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    for msg in ({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]},
                {"type": "http.response.body", "body": b"a:", "more_body": True},
                {"type": "http.response.body", "body": b"b:", "more_body": True},
                {"type": "http.response.body", "body": data}):
        try:
            await send(msg)
        except MemoryError:
            pass
