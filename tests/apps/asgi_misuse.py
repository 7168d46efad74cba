"""An ASGI app that breaks the protocol on purpose (test_asgi_misuse.py).

GET /CASE sends CASE's messages in order (see CASES); the send that breaks the
protocol raises in the app. With ?catch=1 the app catches that exception and,
when no body was sent yet, answers 200 with "caught TYPE: MESSAGE" (sending
the start only if its own was refused), which shows that the refused message
left the response as it was. /receive-twice
calls receive() while an earlier call still waits. A WebSocket to /CASE sends
WS_CASES's messages after the connect, then waits for the client.
"""
import asyncio

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
PARTIAL = {"type": "http.response.body", "body": b"partial ", "more_body": True}


def start(**kw):
    return {**START, **kw}


class NoTruth:
    """A more_body or more_trailers whose truth cannot be told."""

    def __bool__(self):
        raise ValueError("no truth value here")


CASES = {
    # nothing sent yet: a 500
    "not-a-dict": ["http.response.start"],
    "no-type": [{"status": 200}],
    "unknown-type": [{"type": "http.response.bogus"}],
    "type-not-str": [{"type": 7}],
    "body-before-start": [{"type": "http.response.body", "body": b"x"}],
    "start-twice": [START, START],
    "status-str": [start(status="200")],
    "status-missing": [{"type": "http.response.start"}],
    "status-low": [start(status=99)],
    "status-high": [start(status=1000)],
    "status-huge": [start(status=2 ** 70)],
    "headers-not-iterable": [start(headers=5)],
    "header-not-a-pair": [start(headers=[5])],
    "header-str": [start(headers=[("x-a", "b")])],
    "header-triple": [start(headers=[(b"x-a", b"b", b"c")])],
    "header-crlf": [start(headers=[(b"x-a", b"b\r\nx-injected: 1")])],
    "header-nul": [start(headers=[(b"x-a", b"b\0")])],
    "header-name-space": [start(headers=[(b"x a", b"b")])],
    "header-name-colon": [start(headers=[(b"x:a", b"b")])],
    "header-name-empty": [start(headers=[(b"", b"b")])],
    "content-length-letters": [start(headers=[(b"content-length", b"12x")])],
    "content-length-empty": [start(headers=[(b"Content-Length", b"")])],
    "content-length-huge": [start(headers=[(b"content-length", b"9" * 20)])],
    "close-date-then-bad-header": [start(headers=[(b"connection", b"close"), (b"date", b"x"), (b"x a", b"b")])],
    "body-str": [START, {"type": "http.response.body", "body": "text"}],
    "pathsend-before-start": [{"type": "http.response.pathsend", "path": "/etc/hostname"}],
    "pathsend-no-path": [START, {"type": "http.response.pathsend"}],
    "pathsend-directory": [START, {"type": "http.response.pathsend", "path": "/"}],
    "pathsend-missing": [START, {"type": "http.response.pathsend", "path": "/nonexistent/gorgon-test"}],
    "trailers-unasked": [START, {"type": "http.response.trailers", "headers": []}],
    "more-body-no-truth": [START, {"type": "http.response.body", "body": b"x", "more_body": NoTruth()}],
    # the head and part of the body sent: the connection is cut
    "start-after-body": [START, PARTIAL, START],
    "body-str-after-body": [START, PARTIAL, {"type": "http.response.body", "body": "text"}],
    "pathsend-after-body": [START, PARTIAL, {"type": "http.response.pathsend", "path": "/etc/hostname"}],
    "unknown-type-after-body": [START, PARTIAL, {"type": "http.response.bogus"}],
    "trailers-unasked-after-body": [START, PARTIAL, {"type": "http.response.trailers", "headers": []}],
    "more-trailers-no-truth": [start(trailers=True), PARTIAL, {"type": "http.response.body", "body": b""},
                               {"type": "http.response.trailers", "headers": [], "more_trailers": NoTruth()}],
}


ACCEPT = {"type": "websocket.accept"}
WS_CASES = {
    # refused before the handshake is answered: 403
    "ws-send-before-accept": [{"type": "websocket.send", "text": "x"}],
    "ws-unknown-type": [{"type": "websocket.bogus"}],
    "ws-accept-header-crlf": [{"type": "websocket.accept", "headers": [(b"x-a", b"b\r\nx-injected: 1")]}],
    "ws-accept-header-str": [{"type": "websocket.accept", "headers": [("x-a", "b")]}],
    "ws-accept-headers-not-iterable": [{"type": "websocket.accept", "headers": 5}],
    "ws-accept-subprotocol-bytes": [{"type": "websocket.accept", "subprotocol": b"chat"}],
    "ws-accept-subprotocol-crlf": [{"type": "websocket.accept", "subprotocol": "chat\r\nx-injected: 1"}],
    "ws-accept-header-name-crlf": [{"type": "websocket.accept", "headers": [(b"x-a\r\nx-injected", b"1")]}],
    # refused once accepted: close 1011
    "ws-accept-twice": [ACCEPT, ACCEPT],
    "ws-send-neither": [ACCEPT, {"type": "websocket.send"}],
    "ws-send-bytes-str": [ACCEPT, {"type": "websocket.send", "bytes": "text"}],
    "ws-response-start-after-accept": [ACCEPT, {"type": "websocket.http.response.start", "status": 403}],
    "ws-close-code-str": [ACCEPT, {"type": "websocket.close", "code": "1000"}],
    "ws-close-reason-bytes": [ACCEPT, {"type": "websocket.close", "reason": b"bye"}],
}


async def websocket(scope, receive, send):
    await receive()  # websocket.connect
    for msg in WS_CASES[scope["path"].strip("/")]:
        await send(msg)
    await receive()


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    if scope["type"] != "http":
        return
    case = scope["path"].strip("/")
    catch = scope["query_string"] == b"catch=1"
    started = sent = False
    try:
        if case == "receive-twice":
            await receive()  # the (empty) body
            waiting = asyncio.ensure_future(receive())  # waits for a disconnect
            await asyncio.sleep(0)
            try:
                await receive()
            finally:
                waiting.cancel()
        for msg in CASES[case]:
            await send(msg)
            started = started or msg is START
            sent = sent or msg is PARTIAL
    except Exception as e:
        if not catch or sent:
            raise
        body = ("caught %s: %s" % (type(e).__name__, e)).encode()
        if not started:
            await send(START)
        await send({"type": "http.response.body", "body": body})
