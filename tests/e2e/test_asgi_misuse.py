"""An ASGI app that breaks the protocol (tests/apps/asgi_misuse.py): each
refused message raises a clear exception in the app, which the app may catch
and answer after; uncaught, it is a 500 (or, once part of the body is out, a
cut connection), one error entry in the log with the exception, and the
worker serves on."""
import pytest

from conftest import Conn, build_request, fetch, one_error_entry, scaled
from test_asgi_websocket_endings import CLOSE, frames_until_close, handshake

APP = "asgi_misuse:app"

TRAILERS = ("http.response.trailers without 'trailers': True in http.response.start, "
            "or before the last http.response.body")

BEFORE_HEAD = {
    "not-a-dict": ("TypeError", "ASGI messages are dicts, not str"),
    "no-type": ("ValueError", "ASGI message has no 'type'"),
    "unknown-type": ("ValueError", "unexpected ASGI message type 'http.response.bogus' for http"),
    "type-not-str": ("ValueError", "unexpected ASGI message type 7 for http"),
    "body-before-start": ("RuntimeError", "http.response.body before http.response.start"),
    "start-twice": ("RuntimeError", "http.response.start sent twice"),
    "status-str": ("TypeError", "http.response.start needs an int 'status'"),
    "status-missing": ("TypeError", "http.response.start needs an int 'status'"),
    "status-low": ("ValueError", "invalid HTTP status 99"),
    "status-high": ("ValueError", "invalid HTTP status 1000"),
    "status-huge": ("ValueError", "invalid HTTP status %d" % 2 ** 70),
    "headers-not-iterable": ("TypeError", "'int' object is not iterable"),
    "header-not-a-pair": ("TypeError", "ASGI headers must be [name, value] pairs"),
    "header-str": ("TypeError", "ASGI headers must be [bytes, bytes] pairs"),
    "header-triple": ("TypeError", "ASGI headers must be [bytes, bytes] pairs"),
    "header-crlf": ("ValueError", "invalid ASGI header b'x-a': b'b\\r\\nx-injected: 1'"),
    "header-nul": ("ValueError", "invalid ASGI header b'x-a': b'b\\x00'"),
    "header-name-space": ("ValueError", "invalid ASGI header b'x a': b'b'"),
    "header-name-colon": ("ValueError", "invalid ASGI header b'x:a': b'b'"),
    "header-name-empty": ("ValueError", "invalid ASGI header b'': b'b'"),
    "content-length-letters": ("ValueError", "invalid Content-Length 12x"),
    "content-length-empty": ("ValueError", "invalid Content-Length "),
    "content-length-huge": ("ValueError", "invalid Content-Length " + "9" * 20),
    "close-date-then-bad-header": ("ValueError", "invalid ASGI header b'x a': b'b'"),
    "body-str": ("TypeError", "http.response.body 'body' must be bytes, not str"),
    "pathsend-before-start": ("RuntimeError", "http.response.pathsend needs a 'path', after start, before any body"),
    "pathsend-no-path": ("RuntimeError", "http.response.pathsend needs a 'path', after start, before any body"),
    "pathsend-directory": ("IsADirectoryError", "[Errno 21] Is a directory: '/'"),
    "pathsend-missing": ("FileNotFoundError", "[Errno 2] No such file or directory: '/nonexistent/gorgon-test'"),
    "receive-twice": ("RuntimeError", "receive() called again before the previous one completed"),
    "trailers-unasked": ("RuntimeError", TRAILERS),
    "more-body-no-truth": ("ValueError", "no truth value here"),
}

AFTER_HEAD = {
    "start-after-body": ("RuntimeError", "http.response.start sent twice"),
    "body-str-after-body": ("TypeError", "http.response.body 'body' must be bytes, not str"),
    "pathsend-after-body": ("RuntimeError", "http.response.pathsend needs a 'path', after start, before any body"),
    "unknown-type-after-body": ("ValueError", "unexpected ASGI message type 'http.response.bogus' for http"),
    "trailers-unasked-after-body": ("RuntimeError", TRAILERS),
    "more-trailers-no-truth": ("ValueError", "no truth value here"),
}


@pytest.fixture
def srv(shared_server):
    return shared_server(APP, "--workers", "1")


def error_logged(srv, offset, exc, text):
    log = one_error_entry(srv, offset, "Exception in ASGI application", "%s: %s" % (exc, text))
    assert "Traceback" in log, log


@pytest.mark.parametrize("case", sorted(BEFORE_HEAD))
def test_refused_message_before_the_head_is_500_then_the_app_may_answer(srv, case):
    exc, text = BEFORE_HEAD[case]
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        r = c.request("GET", "/" + case)
        assert r.status == 500 and r.body == b"Internal Server Error\n", r
        # Caught by the app: the exception says what was wrong, and the response
        # can still be given on the same connection.
        r = c.request("GET", "/%s?catch=1" % case)
        assert r.status == 200, r
        assert r.body.decode().startswith("caught %s: " % exc) and text in r.body.decode(), r.body
        # What the refused headers said (Connection: close, a Date) did not stick.
        assert not r.has_token("connection", "close") and r.header("date") not in (None, "x"), r
    error_logged(srv, offset, exc, text)
    assert fetch(srv, "/start-twice?catch=1").status == 200


@pytest.mark.parametrize("case", sorted(AFTER_HEAD))
def test_refused_message_after_the_head_cuts_the_response(srv, case):
    exc, text = AFTER_HEAD[case]
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        c.send(build_request("GET", "/" + case))
        r = c.response(allow_truncated=True)
        assert r.status == 200 and r.truncated and r.body == b"partial ", r
        assert c.closed_within(scaled(3)), "connection left open after a refused message mid-response"
    error_logged(srv, offset, exc, text)
    assert fetch(srv, "/start-twice?catch=1").status == 200


WS_BEFORE_ACCEPT = {
    "ws-send-before-accept": ("RuntimeError", "websocket.send before websocket.accept"),
    "ws-unknown-type": ("ValueError", "unexpected ASGI message type 'websocket.bogus' for a websocket"),
    "ws-accept-header-crlf": ("ValueError", "invalid websocket.accept header b'x-a': b'b\\r\\nx-injected: 1'"),
    "ws-accept-header-name-crlf": ("ValueError", "invalid websocket.accept header b'x-a\\r\\nx-injected': b'1'"),
    "ws-accept-header-str": ("TypeError", "websocket.accept headers must be [bytes, bytes] pairs"),
    "ws-accept-subprotocol-crlf": ("ValueError", "invalid websocket.accept subprotocol 'chat\\r\\nx-injected: 1'"),
    "ws-accept-headers-not-iterable": ("TypeError", "'int' object is not iterable"),
    "ws-accept-subprotocol-bytes": ("TypeError", "bad argument type for built-in operation"),
}

WS_AFTER_ACCEPT = {
    "ws-accept-twice": ("RuntimeError", "websocket.accept after the handshake"),
    "ws-send-neither": ("TypeError", "websocket.send needs 'bytes' (bytes) or 'text' (str)"),
    "ws-send-bytes-str": ("TypeError", "websocket.send needs 'bytes' (bytes) or 'text' (str)"),
    "ws-response-start-after-accept": (
        "ValueError", "unexpected ASGI message type 'websocket.http.response.start' for a websocket"),
    "ws-close-code-str": ("TypeError", "'str' object cannot be interpreted as an integer"),
    "ws-close-reason-bytes": ("TypeError", "bad argument type for built-in operation"),
}


@pytest.mark.parametrize("case", sorted(WS_BEFORE_ACCEPT))
def test_refused_websocket_message_before_accept_is_403(srv, case):
    exc, text = WS_BEFORE_ACCEPT[case]
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        r = handshake(c, "/" + case)
        assert r.status == 403, r
        assert c.wait_closed(5) == b"", "more after the 403"
    error_logged(srv, offset, exc, text)
    assert fetch(srv, "/start-twice?catch=1").status == 200


@pytest.mark.parametrize("case", sorted(WS_AFTER_ACCEPT))
def test_refused_websocket_message_after_accept_closes_with_1011(srv, case):
    exc, text = WS_AFTER_ACCEPT[case]
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        assert handshake(c, "/" + case).status == 101
        frames = frames_until_close(c)
        assert [op for op, _ in frames] == [CLOSE], frames
        assert int.from_bytes(frames[-1][1][:2], "big") == 1011, frames
    error_logged(srv, offset, exc, text)
    assert fetch(srv, "/start-twice?catch=1").status == 200
