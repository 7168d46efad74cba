"""JSON response (ASGI): the same payload as json_app.py, serialised per request."""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"message": "Hello, World!", "server": "bench", "items": [1, 2, 3]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
