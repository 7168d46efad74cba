"""CPU-bound ASGI handler: the first N digits of pi (?digits=N), as cpu.py."""

from urllib.parse import parse_qs

from pi import pi_digits


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    qs = parse_qs(scope.get("query_string", b"").decode())
    body = pi_digits(int(qs.get("digits", ["1000"])[0])).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
