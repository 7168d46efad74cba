"""GET /arm?N, as the fault-sweep apps answer it: calls the build's arming
function with N (test builds only: a 404 without it) and answers what it
returned, the faults fired so far."""

NOT_BUILT = b"no fault injection in this build\n"
PLAIN = [("Content-Type", "text/plain")]


def armed(fault, query):
    """The answer's body, or None in a build without fault injection."""
    return None if fault is None else str(fault(int(query or "0"))).encode()


def wsgi_arm(fault, environ, start_response):
    body = armed(fault, environ["QUERY_STRING"])
    start_response("200 OK" if body is not None else "404 Not Found", PLAIN)
    return [body if body is not None else NOT_BUILT]


async def asgi_arm(fault, scope, send):
    body = armed(fault, scope["query_string"].decode())
    await send({"type": "http.response.start", "status": 200 if body is not None else 404,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body if body is not None else NOT_BUILT})


async def request_body(receive):
    """The whole request body; None if the client went away first."""
    data = b""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        data += msg.get("body", b"")
        if not msg.get("more_body"):
            return data
