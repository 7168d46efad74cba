"""HTTP/2 edge cases beyond test_http2.py's basics and conformance: how a
stream's header block becomes the request the application sees, answers the
server gives instead of the application, responses that cannot be framed,
flow-control windows given back, and connections that end by timeout or by
the client's GOAWAY. The raw client is test_http2.py's (python-hyper h2
over a socket, so the exact frames and codes are seen)."""
import socket
import struct
import time

import pytest
from conftest import scaled

pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
from test_http2 import CANCEL, INTERNAL_ERROR, NO_ERROR, PROTOCOL_ERROR, H2, frame, pattern  # noqa: E402

APPS = {"wsgi": "h2edges:app", "asgi": "h2edges:asgi"}
KINDS = pytest.mark.parametrize("kind", ["wsgi", "asgi"])


def new_stream(c, path, method="GET", headers=(), end=False):
    sid = c.conn.get_next_available_stream_id()
    hdrs = [(":method", method), (":path", path), (":scheme", "http"),
            (":authority", "127.0.0.1:%d" % c.addr[1]), *headers]
    c.conn.send_headers(sid, hdrs, end_stream=end)
    c.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.flush()
    return sid


def finished(c, sid):
    return lambda: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None


def test_preface_in_two_parts(server):
    """A connection's first bytes that are part of the HTTP/2 preface: the
    server waits for the rest, then speaks HTTP/2."""
    srv = server(APPS["wsgi"])
    sock = socket.create_connection(srv.addr, timeout=scaled(10))
    # A whole HTTP/1.x head as far as the parser goes (version 2.0: not
    # one it takes), and a prefix of the preface.
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\n")
    time.sleep(0.2)
    sock.sendall(b"SM\r\n\r\n")
    c = H2(srv.addr, sock=sock, preface=False)
    c.conn.initiate_connection()
    c.conn.data_to_send()  # the preface: sent already
    c.conn.update_settings({})
    c.flush()
    assert c.get("/proto")["data"] == b"HTTP/2"
    c.close()


def test_priority_frame_on_itself_is_a_protocol_error(server):
    """RFC 9113 5.3.1: a stream cannot depend on itself, and a PRIORITY
    frame that says so is a PROTOCOL_ERROR even though the server does not
    schedule by RFC 7540 priorities (announcing SETTINGS_NO_RFC7540_PRIORITIES
    would make nghttp2 skip this check: not done)."""
    srv = server(APPS["wsgi"])
    c = H2(srv.addr)
    assert c.get("/proto")["data"] == b"HTTP/2"
    c.raw(frame(0x2, 0, 3, struct.pack(">IB", 3, 15)))
    assert c.wait_goaway()[0] == PROTOCOL_ERROR
    c.close()


# ---- the request the application sees ------------------------------------

@KINDS
def test_cookie_fields_joined_and_authority_becomes_host(server, kind):
    """RFC 9113 8.2.3: cookie fields sent apart are one Cookie for the
    application, joined with "; "; :authority is its Host unless the
    request has a host field of its own."""
    srv = server(APPS[kind])
    c = H2(srv.addr, validate=False)
    r = c.get("/headers", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")])
    assert bytes(r["data"]) == b"cookie=a=1; b=2; c=3|host=127.0.0.1:%d|x-big=0" % srv.port
    r = c.get("/headers", headers=[("host", "example.test")])
    assert bytes(r["data"]) == b"cookie=None|host=example.test|x-big=0"
    c.close()


@KINDS
def test_header_block_larger_than_the_read_buffer(server, kind):
    """A header block past the 16 KiB a connection reads into (and under
    --limit-request-header-size) is whole for the application."""
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/headers", headers=[("x-big", "v" * 40000), ("cookie", "k=" + "c" * 3000)])
    assert r["headers"][":status"] == "200"
    assert bytes(r["data"]) == b"cookie=k=%s|host=127.0.0.1:%d|x-big=40000" % (b"c" * 3000, srv.port)
    c.close()


@KINDS
def test_header_block_that_outgrows_its_buffer_twice(server, kind):
    """Fields that make a stream's head outgrow the request buffer, then
    the larger block it moved to: every field (a name kept before the
    second move, too) is whole for the application."""
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/headers", headers=[("x-pad", "p" * 18000), ("x-big", "v" * 40000), ("cookie", "k=" + "c" * 3000)])
    assert r["headers"][":status"] == "200"
    assert bytes(r["data"]) == b"cookie=k=%s|host=127.0.0.1:%d|x-big=40000" % (b"c" * 3000, srv.port)
    c.close()


@KINDS
def test_request_trailers_are_dropped_and_the_body_kept(server, kind):
    """RFC 9110 6.5.1: a server may discard trailer fields; the body before
    them reaches the application whole."""
    srv = server(APPS[kind])
    c = H2(srv.addr)
    sid = new_stream(c, "/echo", method="POST")
    c.send_body(sid, b"body before trailers", end=False)
    c.conn.send_headers(sid, [("x-checksum", "1234")], end_stream=True)
    c.flush()
    c.wait(finished(c, sid))
    r = c.responses[sid]
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == b"body before trailers"
    c.close()


@KINDS
def test_head_is_answered_without_data(server, kind):
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/", method="HEAD")
    assert r["headers"][":status"] == "200" and r["ended"] and bytes(r["data"]) == b""
    assert c.get("/")["data"] == b"hello h2"
    c.close()


# ---- the server's own answers --------------------------------------------

def test_more_fields_than_the_limit_is_431(server):
    """The header block is parsed by the HTTP/1.1 parser, with the same
    --limit-request-fields: one field too many is a 431 on that stream."""
    srv = server(APPS["wsgi"], "--limit-request-fields", "5")
    c = H2(srv.addr)
    r = c.get("/", headers=[("x-f%d" % i, "v") for i in range(10)])
    assert r["headers"][":status"] == "431" and bytes(r["data"]) == b"Request Header Fields Too Large\n"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()
    assert "431 Request Header Fields Too Large from 127.0.0.1 (HTTP/2 stream 1)" in srv.stderr_text()


def test_connect_is_501(server):
    """CONNECT (RFC 9113 8.5: :authority, no :path) is refused as over
    HTTP/1.1, and the connection goes on."""
    srv = server(APPS["wsgi"])
    c = H2(srv.addr, validate=False)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.test:443")], end_stream=True)
    c.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.flush()
    c.wait(finished(c, sid))
    assert c.responses[sid]["headers"][":status"] == "501"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


def test_header_block_over_the_limit_with_a_body_is_431(server):
    """The body of a refused request is read and thrown away, its window
    given back: a big upload on the same connection afterwards goes through."""
    srv = server(APPS["wsgi"], "--limit-request-header-size", "4096")
    c = H2(srv.addr)
    r = c.get("/echo", method="POST", headers=[("x-big", "a" * 5000), ("x-after", "b")], body=pattern(60000))
    assert r["headers"][":status"] == "431"
    body = pattern(200000)
    r = c.get("/echo", method="POST", body=body)
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == body
    c.close()


@KINDS
def test_application_error_is_500(server, kind):
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/raise")
    assert r["headers"][":status"] == "500"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()
    assert "h2edges: raised on purpose" in srv.stderr_text()


@KINDS
def test_application_error_after_the_head_resets_the_stream(server, kind):
    """An exception in the application once its head and part of the body
    are queued can only be told by RST_STREAM INTERNAL_ERROR: the client
    never takes the part for a whole response. (ASGI's application waits
    after the part, so its head is out before the error.)"""
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/raise-later")
    assert r["reset"] == INTERNAL_ERROR and not r["ended"], r
    if kind == "asgi":
        assert r["headers"][":status"] == "200" and bytes(r["data"]) == b"part one"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()
    assert "h2edges: raised after the head" in srv.stderr_text()


@KINDS
def test_access_log_line_for_a_stream(server, kind):
    """One line per stream, with the body's length counted once."""
    srv = server(APPS[kind], "--access-log")
    c = H2(srv.addr)
    assert c.get("/big?n=100000")["headers"][":status"] == "200"
    c.close()
    line = '"GET /big?n=100000 HTTP/2.0" 200 100000 "-" "-"'
    deadline = time.monotonic() + scaled(10)
    while line not in srv.stdout_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in srv.stdout_text(), srv.stdout_text()


@KINDS
def test_response_head_over_64_kib_resets_the_stream(server, kind):
    """A head HTTP/2 cannot carry (over 64 KiB) resets that stream with
    INTERNAL_ERROR; the connection and its other streams go on."""
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/bighead?n=70000")
    assert r["reset"] == INTERNAL_ERROR and r["headers"] is None
    r = c.get("/bighead?n=1000")
    assert r["headers"][":status"] == "200" and r["headers"]["x-big"] == "b" * 1000
    c.close()


# ---- bodies and windows --------------------------------------------------

def test_streamed_body_over_the_limit_is_413(server):
    """ASGI streams the body: one past --limit-request-body (no
    content-length to refuse it early) is a 413 while nothing is sent."""
    srv = server(APPS["asgi"], "--limit-request-body", "1000")
    c = H2(srv.addr)
    r = c.get("/echo", method="POST", body=b"x" * 5000)
    assert r["headers"][":status"] == "413"
    # The same once the application is reading the body: it hears a
    # disconnect, the client a 413 (no head of the application's is out).
    sid = new_stream(c, "/echo", method="POST")
    c.send_body(sid, b"x" * 500, end=False)
    time.sleep(scaled(0.3))
    c.send_body(sid, b"x" * 5000, end=False)
    c.wait(finished(c, sid))
    assert c.responses[sid]["headers"][":status"] == "413"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


def test_streamed_body_over_the_limit_after_the_head_is_cancelled(server):
    """Once the response head is out, a body past the limit can no longer
    be a 413: the stream is reset with CANCEL and the application hears
    http.disconnect."""
    srv = server(APPS["asgi"], "--limit-request-body", "1000")
    c = H2(srv.addr)
    sid = new_stream(c, "/start-then-read", method="POST")
    c.send_body(sid, b"y" * 500, end=False)
    c.wait(lambda: c.responses[sid]["headers"] is not None and len(c.responses[sid]["data"]) == 500)
    assert c.responses[sid]["headers"][":status"] == "200"
    c.send_body(sid, b"z" * 5000, end=False)
    c.wait(finished(c, sid))
    assert c.responses[sid]["reset"] == CANCEL and not c.responses[sid]["ended"]
    assert c.get("/")["headers"][":status"] == "200"
    c.close()
    deadline = time.monotonic() + scaled(10)
    while "disconnect heard" not in srv.stdout_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "h2edges: disconnect heard" in srv.stdout_text()


def test_early_response_resets_the_rest_of_the_upload(server):
    """An ASGI application that answers before the request's end: the
    response ends the stream, then RST_STREAM NO_ERROR tells the client to
    stop sending (RFC 9113 8.1)."""
    srv = server(APPS["asgi"])
    c = H2(srv.addr)
    sid = new_stream(c, "/", method="POST")
    c.send_body(sid, b"more to come", end=False)
    c.wait(lambda: c.responses[sid]["ended"] and c.responses[sid]["reset"] is not None)
    assert bytes(c.responses[sid]["data"]) == b"hello h2" and c.responses[sid]["reset"] == NO_ERROR
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


def test_reset_stream_gives_its_unread_body_window_back(server):
    """Body bytes an ASGI application never took are the connection's
    window: a reset stream gives them back, or the connection could carry
    no more uploads (its window is 64 KiB, never raised)."""
    srv = server(APPS["asgi"])
    c = H2(srv.addr)
    for _ in range(3):  # 3 x 60000 bytes: more than the window unless given back
        sid = new_stream(c, "/slow?s=30", method="POST")
        c.send_body(sid, pattern(60000), end=False)
        c.conn.reset_stream(sid, error_code=CANCEL)
        c.flush()
    body = pattern(60000)
    r = c.get("/echo", method="POST", body=body)
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == body
    c.close()


# ---- how connections end -------------------------------------------------

def closed_by_server(c, timeout):
    """Reads until the server closes (True) or the timeout passes (False);
    and the GOAWAY it sent."""
    deadline = time.monotonic() + scaled(timeout)
    c.sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = c.sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            data = b""
        if not data:
            return True, c.goaway
        try:
            events = c.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = []
        for ev in events:
            if isinstance(ev, h2.events.ConnectionTerminated):
                c.goaway = (ev.error_code, ev.last_stream_id)
    return False, c.goaway


def test_idle_connection_ends_with_goaway_after_keep_alive(server):
    srv = server(APPS["wsgi"], "--keep-alive", "1", "--header-timeout", "1")
    c = H2(srv.addr)
    assert c.get("/")["headers"][":status"] == "200"
    assert closed_by_server(c, 15) == (True, (NO_ERROR, 1))
    # Before a first request the head timeout applies.
    c = H2(srv.addr)
    assert closed_by_server(c, 15) == (True, (NO_ERROR, 0))


def test_client_goaway_closes_once_its_streams_are_answered(server):
    srv = server(APPS["wsgi"])
    c = H2(srv.addr)
    sid = c.request("/slow?s=0.3")
    # Raw, so the client's state machine still takes the answer.
    c.raw(frame(0x7, 0x0, 0, struct.pack(">II", 0, NO_ERROR)))
    c.wait(lambda: c.closed or c.responses[sid]["ended"])
    assert c.responses[sid]["ended"] and bytes(c.responses[sid]["data"]) == b"slow done"
    assert closed_by_server(c, 15) == (True, None)


def test_client_that_stops_reading_is_closed_after_io_timeout(server):
    """Windows opened wide, then the socket not read: the server's queue
    stays full, and after --io-timeout without progress the connection is
    closed, short of the whole response."""
    srv = server(APPS["wsgi"], "--io-timeout", "1")
    c = H2(srv.addr)
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    c.conn.increment_flow_control_window((1 << 31) - 1 - 65535)
    c.flush()
    total = 64 << 20
    c.request("/big?n=%d" % total)
    time.sleep(scaled(4))  # more than the io-timeout, not reading
    got, deadline = 0, time.monotonic() + scaled(20)
    c.sock.settimeout(scaled(5))
    while time.monotonic() < deadline:
        try:
            d = c.sock.recv(1 << 20)
        except (ConnectionResetError, socket.timeout):
            d = b""
        if not d:
            break
        got += len(d)
    else:
        pytest.fail("still open after %d bytes" % got)
    assert 0 < got < total
    c.close()
    # Others are served.
    other = H2(srv.addr)
    assert other.get("/")["headers"][":status"] == "200"
    other.close()

