"""An ASGI app for the fault sweep (test_faults_h2_tls.py) that carries on
when a send fails: each MemoryError of a send is caught and the next message
sent anyway, so that the server, not the app, must keep a response that
failed half-way from going on (a cut, never bytes after a partial head).
The body is made of the parts b"a:", b"b:", the request body; GET /arm?N
arms the fault as in faults.py."""
from faults import asgi_arm, lifespan, request_body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["path"] == "/arm":
        return await asgi_arm(scope, send)
    data = await request_body(receive)
    for msg in ({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]},
                {"type": "http.response.body", "body": b"a:", "more_body": True},
                {"type": "http.response.body", "body": b"b:", "more_body": True},
                {"type": "http.response.body", "body": data}):
        try:
            await send(msg)
        except MemoryError:
            pass
