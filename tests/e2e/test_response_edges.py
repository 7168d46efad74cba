"""Responses at the edges, for WSGI and ASGI alike: the application's own
Server and Date fields, bodies longer or shorter than their Content-Length,
an application's Connection: close, pathsend of what is not a regular file
or past a Content-Length; and WebSocket handshakes that are not one."""
import json

import pytest
from test_asgi_websocket import TEXT, frame, handshake, read_frame

from conftest import Conn, build_request, host_header, log_since, wait_for

APPS = {"wsgi": "respedges:app", "asgi": "respedges:asgi"}
KINDS = pytest.mark.parametrize("kind", ["wsgi", "asgi"])


@KINDS
def test_application_server_and_date_fields_are_kept(shared_server, kind):
    """The server adds Server and Date only when the application has not."""
    srv = shared_server(APPS[kind], "--workers", "1")
    with Conn(srv) as c:
        r = c.request("GET", "/own-headers")
        assert r.status == 200 and r.body == b"own"
        assert r.headers_all("Server") == ["own-server/1"], r.headers
        assert r.headers_all("Date") == ["Mon, 01 Jan 2001 00:00:00 GMT"], r.headers
        r = c.request("GET", "/")
        assert len(r.headers_all("Server")) == 1 and len(r.headers_all("Date")) == 1, r.headers


@KINDS
def test_body_past_content_length_is_cut_to_it(shared_server, kind):
    """No byte beyond the promised length goes out (it would be read as
    the next response); the connection stays usable."""
    srv = shared_server(APPS[kind], "--workers", "1")
    with Conn(srv) as c:
        r = c.request("GET", "/longer")
        assert r.status == 200 and r.body == b"01234"
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"ok"


@KINDS
def test_body_short_of_content_length_closes_the_connection(shared_server, kind):
    """The client cannot tell the response's end otherwise: what was sent
    goes out, then the connection is closed."""
    srv = shared_server(APPS[kind], "--workers", "1")
    with Conn(srv) as c:
        c.send(build_request("GET", "/shorter", host=host_header(c.addr)))
        r = c.response("GET", allow_truncated=True)
        assert r.status == 200 and r.truncated and r.body == b"01234"
        c.wait_closed()


def test_asgi_connection_close_field_closes_after_the_response(shared_server):
    srv = shared_server(APPS["asgi"], "--workers", "1")
    with Conn(srv) as c:
        r = c.request("GET", "/close")
        assert r.status == 200 and r.body == b"ok" and r.has_token("Connection", "close")
        c.wait_closed()


def test_pathsend_of_what_is_not_a_regular_file_is_500(shared_server):
    srv = shared_server(APPS["asgi"], "--workers", "1")
    with Conn(srv) as c:
        r = c.request("GET", "/pathsend-device")
        assert r.status == 500, r
    assert "pathsend: '/dev/null' is not a regular file" in srv.stderr_text()


def test_pathsend_stops_at_content_length(shared_server):
    srv = shared_server(APPS["asgi"], "--workers", "1")
    with Conn(srv) as c:
        r = c.request("GET", "/pathsend-short")
        assert r.status == 200 and r.body == b'"""Respons'
        assert c.request("GET", "/").body == b"ok"


REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported", 299: "Unknown",
}


def test_asgi_status_lines_carry_the_reason_phrase(shared_server):
    """ASGI gives a status code only: the status line's reason phrase is
    RFC 9110's for it ("Unknown" for a code it does not name)."""
    srv = shared_server(APPS["asgi"], "--workers", "1")
    with Conn(srv) as c:
        for code, reason in REASONS.items():
            r = c.request("GET", "/status?%d" % code)
            assert (r.status, r.reason) == (code, reason)


def test_spill_file_falls_back_to_tmp_when_tmpdir_is_unusable(server):
    """A body past the 1 MiB kept in memory goes to a temporary file in
    TMPDIR; a TMPDIR that cannot hold one does not fail the upload."""
    srv = server("h2app:app", env={"TMPDIR": "/nonexistent/gorgon-test"}, workers=1)
    body = bytes(range(256)) * 6000
    with Conn(srv) as c:
        r = c.request("POST", "/echo", body=body)
        assert r.status == 200 and r.body == body


def test_bad_chunk_after_the_response_began_closes_with_a_log_line(shared_server):
    """ASGI streams the body: a malformed chunk once the application has
    begun its response can no longer be a 400; the connection is closed
    and the log says why."""
    srv = shared_server("h2edges:asgi", "--workers", "1")
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        c.send(build_request("POST", "/start-then-read", [("Transfer-Encoding", "chunked")],
                             host=host_header(c.addr)) + b"5\r\nhello\r\n")
        r = c.read_head()
        assert r.status == 200, r
        c.send(b"zz\r\n")
        c.wait_closed()
    log = wait_for(lambda: "while streaming a body" in log_since(srv, offset) and log_since(srv, offset), 10,
                   what="the log line")
    assert "400 from 127.0.0.1 while streaming a body: malformed or ambiguous request" in log, log


# ---- WebSocket handshakes ------------------------------------------------

WS_APP = "asgi_app:app"


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.mark.parametrize("method,key,version,why", [
    ("POST", KEY, "13", b"a WebSocket handshake is an HTTP/1.1 GET"),
    ("GET", "short", "13", b"missing or malformed Sec-WebSocket-Key"),
    ("GET", None, "13", b"missing or malformed Sec-WebSocket-Key"),
    ("GET", KEY, "8", b"unsupported Sec-WebSocket-Version (13 expected)"),
    ("GET", KEY, "130", b"unsupported Sec-WebSocket-Version (13 expected)"),
    ("GET", KEY, None, b"unsupported Sec-WebSocket-Version (13 expected)"),
], ids=["post", "short-key", "no-key", "version-8", "version-130", "no-version"])
def test_not_a_handshake_is_400(shared_server, method, key, version, why):
    srv = shared_server(WS_APP, "--workers", "1")
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Content-Length", "0")]
    headers += [("Sec-WebSocket-Key", key)] if key else []
    headers += [("Sec-WebSocket-Version", version)] if version else []
    with Conn(srv) as c:
        c.send(build_request(method, "/ws/echo", headers, host=host_header(c.addr)))
        r = c.response()
        assert r.status == 400 and r.body == why + b"\n", r


def test_asgi_header_pairs_as_lists_in_a_tuple(shared_server):
    """ASGI headers are an iterable of [name, value]: lists in a tuple are
    taken as tuples in a list are, for a response and a WebSocket accept."""
    srv = shared_server(APPS["asgi"], "--workers", "1")
    with Conn(srv) as c:
        r = c.request("GET", "/list-pairs")
        assert r.status == 200 and r.body == b"ok" and r.header("x-pair") == "list", r
    with Conn(srv) as c:
        r = handshake(c, "/ws-list-pairs")
        assert r.status == 101 and r.header("x-pair") == "list", r
        assert read_frame(c) == (True, TEXT, b"text, not bytes")
        fin, op, payload = read_frame(c)
        assert (fin, op, payload) == (True, 8, (1000).to_bytes(2, "big")), (op, payload)


def test_subprotocol_list_with_blanks(shared_server):
    """Sec-WebSocket-Protocol "a , , b": the blanks around and between the
    names are not names."""
    srv = shared_server(WS_APP, "--workers", "1")
    with Conn(srv) as c:
        r = handshake(c, "/ws/echo", extra=[("Sec-WebSocket-Protocol", " superchat , ,\tchat ")])
        assert r.status == 101 and r.header("Sec-WebSocket-Protocol") == "chat", r
        c.send(frame(TEXT, "subprotocols"))
        fin, op, payload = read_frame(c)
        assert (fin, op) == (True, TEXT) and json.loads(payload) == ["superchat", "chat"]


