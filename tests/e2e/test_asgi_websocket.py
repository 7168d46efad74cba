"""ASGI "websocket" scopes (RFC 6455) against tests/apps/asgi_app.py: the
handshake, subprotocols, accept/close/denial, text and binary messages,
fragmentation, ping/pong, close codes, protocol errors, --ws-max-size,
--ws-ping-interval, graceful stop. Raw sockets where the `websockets` client
would refuse to misbehave."""
import base64
import contextlib
import hashlib
import json
import os
import resource
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from conftest import Conn, build_request, host_header, in_threads, proc_rss_kib, read_lines, scaled, wait_for

APP = "asgi_app:app"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


@pytest.fixture
def srv(shared_server):
    return shared_server(APP, "--workers", "1")


def url(s, path):
    return "ws://%s:%d%s" % (s.addr[0], s.port, path)


def client(s, path, **kw):
    kw.setdefault("open_timeout", scaled(10))
    kw.setdefault("close_timeout", scaled(5))
    return ws_connect(url(s, path), compression=None, proxy=None, **kw)


# ---- raw frames ---------------------------------------------------------------------

def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, m | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return code.to_bytes(2, "big") + reason


def handshake(c, path, key="dGhlIHNhbXBsZSBub25jZQ==", extra=()):
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"), *extra]
    c.send(build_request("GET", path, headers, host=host_header(c.addr)))
    return c.read_head()


def read_frame(c, timeout=5, rsv_ok=0):
    """(fin, opcode, payload) of the next server frame; None if the server closed.
    rsv_ok: RSV bits the server may set (0x40 once permessage-deflate is on)."""
    deadline = time.monotonic() + scaled(timeout)
    head = c._read_exact(2, deadline, "a frame header")
    if len(head) < 2:
        return None
    assert not head[1] & 0x80, "server frames must not be masked"
    assert not head[0] & 0x70 & ~rsv_ok, "RSV bits set in a server frame"
    n = head[1] & 0x7f
    if n == 126:
        n = int.from_bytes(c._read_exact(2, deadline, "length"), "big")
    elif n == 127:
        n = int.from_bytes(c._read_exact(8, deadline, "length"), "big")
    payload = c._read_exact(n, deadline, "a %d-byte payload" % n)
    assert len(payload) == n, "connection closed inside a frame"
    return bool(head[0] & 0x80), head[0] & 0x0f, payload


def expect_close(c, code, timeout=5):
    """The next frames end with a close frame carrying `code`, then TCP close."""
    while True:
        f = read_frame(c, timeout)
        assert f is not None, "connection closed without a close frame (expected %d)" % code
        if f[1] == CLOSE:
            break
    got = int.from_bytes(f[2][:2], "big")
    assert got == code, "close code %d, expected %d (reason %r)" % (got, code, f[2][2:])
    assert c.closed_within(scaled(6)), "TCP connection left open after the close frame"
    return f[2][2:]


def open_raw(s, path="/ws/echo"):
    c = Conn(s)
    r = handshake(c, path)
    assert r.status == 101, r
    return c


# ---- handshake -----------------------------------------------------------------------

def test_handshake_accept_key_and_raw_echo(srv):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with Conn(srv) as c:
        r = handshake(c, "/ws/echo", key)
        assert r.status == 101, r
        assert r.has_token("Upgrade", "websocket") and r.has_token("Connection", "upgrade"), r.headers
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert expected == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
        assert r.header("Sec-WebSocket-Accept") == expected
        assert r.header("Sec-WebSocket-Protocol") is None, "no subprotocol was offered"
        c.send(frame(TEXT, "hi"))
        assert read_frame(c) == (True, TEXT, b"hi")
        c.send(frame(CLOSE, close_payload(1000)))
        expect_close(c, 1000)


def test_bad_handshake_version_is_400(srv):
    with Conn(srv) as c:
        c.send(build_request("GET", "/ws/echo", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "8")],
            host=host_header(c.addr)))
        r = c.response()
        assert r.status == 400, r


def test_subprotocol_selection(srv):
    with client(srv, "/ws/echo", subprotocols=["superchat", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send("subprotocols")
        assert json.loads(ws.recv(timeout=5)) == ["superchat", "chat"]
    with client(srv, "/ws/echo", subprotocols=["superchat"]) as ws:
        assert ws.subprotocol is None


def test_websocket_scope(srv):
    with client(srv, "/ws/echo?x=1") as ws:
        ws.send("scope")
        s = json.loads(ws.recv(timeout=5))
    assert s["type"] == "websocket" and s["scheme"] == "ws"
    assert s["path"] == "/ws/echo" and s["query_string"] == "x=1"
    assert s["asgi"]["version"] == "3.0"
    assert "websocket.http.response" in s["extensions"], s["extensions"]


def test_close_before_accept_is_403(srv):
    with Conn(srv) as c:
        r = handshake(c, "/ws/reject")
        assert r.status == 403, r
        assert c.closed_within(scaled(3))


def test_denial_response_with_custom_status_and_body(srv):
    with Conn(srv) as c:
        c.send(build_request("GET", "/ws/deny", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")],
            host=host_header(c.addr)))
        r = c.response()
        assert r.status == 401, r
        assert r.header("x-denied") == "yes"
        assert r.body == b"nope, not you\n"
    with pytest.raises(InvalidStatus) as e:
        client(srv, "/ws/deny")
    assert e.value.response.status_code == 401


# ---- messages ---------------------------------------------------------------------------

def test_text_and_binary_messages(srv):
    with client(srv, "/ws/echo", max_size=None) as ws:
        ws.send("h\u00e9llo \u2713")
        assert ws.recv(timeout=5) == "h\u00e9llo \u2713"
        ws.send(bytes(range(256)))
        assert ws.recv(timeout=5) == bytes(range(256))
        big = os.urandom(300 * 1024)
        ws.send(big)
        assert ws.recv(timeout=5) == big
        ws.send("")
        assert ws.recv(timeout=5) == ""


def test_fragmented_message_with_interleaved_ping(srv):
    with open_raw(srv) as c:
        word = "wörld".encode()  # "ö" split across two fragments
        c.send(frame(TEXT, b"Hello " + word[:2], fin=False))
        c.send(frame(PING, b"mid"))
        c.send(frame(CONT, word[2:4], fin=False))
        c.send(frame(CONT, word[4:], fin=True))
        assert read_frame(c) == (True, PONG, b"mid"), "ping inside a fragmented message not answered"
        assert read_frame(c) == (True, TEXT, "Hello wörld".encode())
        c.send(frame(BINARY, b"\x00\x01", fin=False) + frame(CONT, b"\x02", fin=True))
        assert read_frame(c) == (True, BINARY, b"\x00\x01\x02")
        c.send(frame(CLOSE, close_payload(1000)))
        expect_close(c, 1000)


def test_ping_answered_by_server(srv):
    with client(srv, "/ws/echo") as ws:
        pong = ws.ping(b"are you there")
        assert pong.wait(scaled(5)), "no pong for the client's ping"
        ws.send("still fine")
        assert ws.recv(timeout=5) == "still fine"


# ---- close codes --------------------------------------------------------------------------

def test_app_close_code_and_reason_reach_client(srv):
    with client(srv, "/ws/echo") as ws:
        ws.send("close-4000")
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
    assert e.value.rcvd is not None, "no close frame from the server"
    assert e.value.rcvd.code == 4000 and e.value.rcvd.reason == "bye", e.value


def test_client_close_code_reaches_app(srv, tmp_path):
    marker = tmp_path / "ws"
    with client(srv, "/ws/echo?marker=%s" % marker) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        ws.close(code=1001, reason="leaving")
    wait_for(lambda: read_lines(marker), 5, what="the app's websocket.disconnect")
    assert read_lines(marker) == ["disconnect 1001"], read_lines(marker)


def test_unmasked_client_frame_is_1002(srv):
    with open_raw(srv) as c:
        c.send(frame(TEXT, "not masked", mask=False))
        expect_close(c, 1002)


def test_reserved_bits_are_1002(srv):
    with open_raw(srv) as c:
        c.send(frame(TEXT, "rsv1", rsv=0x40))
        expect_close(c, 1002)


BAD_FRAMES = {
    "close-one-byte": (frame(CLOSE, b"\x03"), 1002),
    "close-code-999": (frame(CLOSE, (999).to_bytes(2, "big")), 1002),
    "close-code-1004": (frame(CLOSE, (1004).to_bytes(2, "big")), 1002),
    "close-code-1005": (frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
    "close-code-5000": (frame(CLOSE, (5000).to_bytes(2, "big")), 1002),
    "close-reason-not-utf8": (frame(CLOSE, (1000).to_bytes(2, "big") + b"\xc3"), 1007),
    "continuation-without-a-start": (frame(CONT, "x"), 1002),
    "new-message-inside-a-fragmented-one": (frame(TEXT, "a", fin=False) + frame(TEXT, "b"), 1002),
    "fragmented-ping": (frame(PING, "p", fin=False), 1002),
    "ping-over-125-bytes": (frame(PING, b"p" * 126), 1002),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_client_frames_get_their_close_code(srv, case):
    data, code = BAD_FRAMES[case]
    with open_raw(srv) as c:
        c.send(data)
        expect_close(c, code)


@pytest.mark.parametrize("sent,answer", [(b"", 1000), ((3000).to_bytes(2, "big") + b"ok", 3000),
                                         ((1001).to_bytes(2, "big"), 1001)],
                         ids=["no-code", "3000", "1001"])
def test_client_close_is_answered_with_its_code(srv, sent, answer):
    with open_raw(srv) as c:
        c.send(frame(CLOSE, sent))
        expect_close(c, answer)


def test_app_close_reason_over_123_bytes_is_cut_on_a_character(srv):
    """A close frame holds 123 bytes of reason: a longer one is cut, and never
    inside a UTF-8 sequence (the client would have to fail it with 1007)."""
    with open_raw(srv) as c:
        c.send(frame(TEXT, "close-long"))
        reason = expect_close(c, 4001)
        assert reason == "\u00e9".encode() * 61, reason


def test_messages_before_a_bad_frame_are_answered_then_the_close(srv):
    # One segment: two good messages, a frame with a reserved opcode, a ping.
    # The good ones are echoed, then 1002; the ping after the bad frame is
    # never read, so no pong (Autobahn's strict behaviour, cases 4.1.3, 5.15).
    with open_raw(srv) as c:
        c.send(frame(TEXT, "one") + frame(BINARY, b"two") + frame(5, "bad") + frame(PING, "p"))
        assert read_frame(c) == (True, TEXT, b"one")
        assert read_frame(c) == (True, BINARY, b"two")
        f = read_frame(c)
        assert f is not None and f[1] == CLOSE, f
        assert int.from_bytes(f[2][:2], "big") == 1002
        assert c.closed_within(scaled(6))


def test_bad_frame_with_nothing_before_it_fails_at_once(srv):
    with open_raw(srv) as c:
        c.send(frame(TEXT, "one"))
        assert read_frame(c) == (True, TEXT, b"one")
        c.send(frame(TEXT, "two", rsv=0x20) + frame(TEXT, "three"))
        f = read_frame(c)
        assert f is not None and f[1] == CLOSE and int.from_bytes(f[2][:2], "big") == 1002, f


def test_invalid_utf8_text_is_1007(srv):
    with open_raw(srv) as c:
        c.send(frame(TEXT, b"ok \xff\xfe bad"))
        expect_close(c, 1007)


def test_text_ending_inside_utf8_sequence_is_1007(srv):
    with open_raw(srv) as c:
        c.send(frame(TEXT, b"cut \xc3", fin=False) + frame(CONT, b"", fin=True))
        expect_close(c, 1007)


def test_protocol_error_reaches_app_as_disconnect(srv, tmp_path):
    marker = tmp_path / "ws"
    with Conn(srv) as c:
        assert handshake(c, "/ws/echo?marker=%s" % marker).status == 101
        c.send(frame(TEXT, "x", mask=False))
        expect_close(c, 1002)
    wait_for(lambda: read_lines(marker), 5, what="websocket.disconnect after a protocol error")
    assert read_lines(marker) == ["disconnect 1002"]


# ---- --ws-max-size --------------------------------------------------------------------------

MIB16 = 16 * 1024 * 1024


def test_default_max_size_accepts_16_mib(srv):
    with client(srv, "/ws/echo", max_size=None) as ws:
        data = b"\x5a" * MIB16
        ws.send(data)
        assert ws.recv(timeout=scaled(20)) == data


def test_default_max_size_frame_header_over_16_mib_is_1009(srv):
    with open_raw(srv) as c:
        head = bytes([0x82, 0x80 | 127]) + (MIB16 + 1).to_bytes(8, "big") + os.urandom(4)
        c.send(head + b"\0" * 1000)  # the header alone decides it
        expect_close(c, 1009)


def test_client_sending_too_big_message_sees_1009(srv):
    """The realistic case: the client is still sending its 16 MiB + 1 message
    when the server refuses it; the client must still get the 1009 close frame
    (not a connection reset that discards it). Ten tries: a race must not
    decide it."""
    data = b"\x5a" * (MIB16 + 1)
    for attempt in range(10):
        with client(srv, "/ws/echo", max_size=None) as ws:
            with pytest.raises(ConnectionClosed) as e:
                ws.send(data)
                ws.recv(timeout=scaled(20))
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009, \
            "try %d: client saw %r instead of a 1009 close frame" % (attempt + 1, e.value)


def test_small_ws_max_size_closes_with_1009(server):
    s = server(APP, "--workers", "1", "--ws-max-size", "1000")
    with client(s, "/ws/echo") as ws:
        ws.send(b"a" * 1000)
        assert ws.recv(timeout=5) == b"a" * 1000
        ws.send(b"a" * 1001)
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009, e.value
    # a fragmented message over the limit, each fragment under it
    with open_raw(s) as c:
        c.send(frame(TEXT, "b" * 600, fin=False) + frame(CONT, "b" * 600, fin=True))
        expect_close(c, 1009)


# ---- --ws-ping-interval ----------------------------------------------------------------------

def test_ping_interval_closes_client_that_never_pongs(server):
    interval = 1.0
    s = server(APP, "--workers", "1", "--ws-ping-interval", str(interval))
    with client(s, "/ws/echo", ping_interval=None) as good:  # answers pings on its own
        t_good = time.monotonic()
        with open_raw(s) as c:
            t0 = time.monotonic()
            f = read_frame(c, timeout=3 * interval)
            assert f is not None and f[1] == PING, "expected a ping from the server, got %r" % (f,)
            t_ping = time.monotonic() - t0
            assert c.closed_within(scaled(3 * interval)), "a client that never answers pings was kept"
            t_closed = time.monotonic() - t0
        assert t_ping >= interval * 0.8, "pinged after %.2fs, before the %.1fs interval" % (t_ping, interval)
        assert t_closed <= scaled(2 * interval + 0.8), \
            "closed after %.2fs; expected within ~2 x %.1fs" % (t_closed, interval)
        time.sleep(max(0, t_good + 3.2 * interval - time.monotonic()))
        good.send("alive")  # a client that answers pings stays connected
        assert good.recv(timeout=5) == "alive"


# ---- graceful stop and concurrency -------------------------------------------------------------

def test_graceful_stop_closes_websockets_with_1001(server, tmp_path):
    marker = tmp_path / "ws"
    s = server(APP, "--workers", "2")
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(client(s, "/ws/echo?marker=%s" % marker)) for _ in range(4)]
        for ws in clients:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
        s.send_signal(signal.SIGTERM)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as e:
                ws.recv(timeout=scaled(10))
            assert e.value.rcvd is not None and e.value.rcvd.code == 1001, e.value
        assert s.wait_exit(20) == 0, s.describe()
    assert read_lines(marker) == ["disconnect 1001"] * 4, read_lines(marker)


@pytest.mark.tsan
def test_many_websockets_on_two_workers(shared_server):
    s = shared_server(APP, "--workers", "2")

    def talk(k):
        with client(s, "/ws/echo") as ws:
            for i in range(30):
                msg = "%d:%d:" % (k, i) + "x" * (i * 37)
                ws.send(msg)
                assert ws.recv(timeout=10) == msg
                ws.send(msg.encode())
                assert ws.recv(timeout=10) == msg.encode()
        return k

    assert in_threads(talk, [(k,) for k in range(8)]) == list(range(8))


@pytest.mark.nosan  # the sanitizer's allocator keeps freed memory on purpose
def test_idle_websockets_hold_no_buffers(server):
    """500 WebSockets, one echo each, then idle: the server grows by well
    under one read buffer (16 KiB) per WebSocket, and each still echoes."""
    n = 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 200:
        pytest.skip("the open-file limit (%d) is below %d connections" % (hard, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 1000)), hard))
    s = server("asgi_app:app", "--workers", "1", "--max-connections", str(n + 100), "--ws-ping-interval", "0")
    held = []
    try:
        with open_raw(s) as warm:
            warm.send(frame(TEXT, "warm"))
            assert read_frame(warm) == (True, TEXT, b"warm")
        before = proc_rss_kib(s.pid)
        for i in range(n):
            c = open_raw(s)
            held.append(c)
            c.send(frame(TEXT, "m%d" % i))
            assert read_frame(c) == (True, TEXT, b"m%d" % i)
        grown = (proc_rss_kib(s.pid) - before) / n
        assert grown < 10, "%.1f KiB per idle WebSocket" % grown
        for c in held[:: n // 20]:
            c.send(frame(TEXT, "again"))
            assert read_frame(c) == (True, TEXT, b"again"), "an idle WebSocket stopped echoing"
    finally:
        for c in held:
            c.close()


# ---- --ws-per-message-deflate ----------------------------------------------------------------

def deflate_client(s, path, **kw):
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    kw.setdefault("open_timeout", scaled(10))
    kw.setdefault("close_timeout", scaled(5))
    return ws_connect(url(s, path), proxy=None, compression=None,
                      extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)], **kw)


def raw_deflate(data, bits=15):
    import zlib
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_deflate_is_off_by_default(srv):
    with Conn(srv) as c:
        r = handshake(c, "/ws/echo", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        assert r.status == 101 and r.header("Sec-WebSocket-Extensions") is None, r.headers
        c.send(frame(TEXT, raw_deflate(b"hello"), rsv=0x40))
        expect_close(c, 1002)  # RSV1 means nothing without the extension


def test_deflate_negotiated_and_messages_echo(server):
    s = server(APP, "--workers", "1", "--ws-per-message-deflate")
    with deflate_client(s, "/ws/echo") as ws:
        ext = ws.response.headers["Sec-WebSocket-Extensions"]
        assert ext == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11", ext
        text = json.dumps([{"id": i, "name": "gorgon", "ok": True} for i in range(2000)])
        for msg in (text, text.encode(), "", "", "é" * 5000, b"\x00" * 300000):
            ws.send(msg)
            assert ws.recv(timeout=scaled(10)) == msg
    # A raw client: the server's frames have RSV1 and inflate to the message.
    import zlib
    with Conn(s) as c:
        r = handshake(c, "/ws/echo", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        assert r.header("Sec-WebSocket-Extensions") == "permessage-deflate; server_max_window_bits=11"
        d = zlib.decompressobj(-11)  # one for the connection: the server keeps its context
        for _ in range(2):
            c.send(frame(TEXT, raw_deflate(b"abc" * 1000), rsv=0x40))
            head = c._read_exact(2, time.monotonic() + scaled(5), "a frame header")
            assert head[0] == 0xC1, hex(head[0])  # FIN, RSV1, text
            n = head[1]
            assert n < 126
            payload = c._read_exact(n, time.monotonic() + scaled(5), "payload")
            assert d.decompress(payload + b"\x00\x00\xff\xff") == b"abc" * 1000
        # RSV1 on a continuation frame is a protocol error (RFC 7692 6.1).
        c.send(frame(TEXT, raw_deflate(b"x"), fin=False, rsv=0x40) + frame(CONT, b"", rsv=0x40))
        expect_close(c, 1002)


def final_deflate(data, bits=15):
    """data as one raw deflate stream that ends with a final block (BFINAL),
    which RFC 7692 lets a sender end a message with instead of a flush."""
    import zlib
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return z.compress(data) + z.flush(zlib.Z_FINISH)


def test_deflate_messages_that_end_with_a_final_block(server):
    # Each message ends its deflate stream; the next starts a new one. With
    # the context kept between messages, the second and third must decode as
    # well as the first, and a flushed message may follow.
    import zlib
    s = server(APP, "--workers", "1", "--ws-per-message-deflate")
    with Conn(s) as c:
        assert handshake(c, "/ws/echo", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]).status == 101
        d = zlib.decompressobj(-11)
        sent = [(final_deflate(b"first" * 100), b"first" * 100), (final_deflate(b"second"), b"second"),
                (final_deflate(b"a") + final_deflate(b"b"), b"ab"), (raw_deflate(b"flushed"), b"flushed")]
        for payload, text in sent:
            c.send(frame(TEXT, payload, rsv=0x40))
            f = read_frame(c, rsv_ok=0x40)
            assert f is not None and f[1] == TEXT, (text, f)
            assert d.decompress(f[2] + b"\x00\x00\xff\xff") == text


def test_deflate_bomb_closes_with_1009(server):
    s = server(APP, "--workers", "1", "--ws-per-message-deflate", "--ws-max-size", "100000")
    bomb = raw_deflate(b"\x00" * 10_000_000)
    assert len(bomb) < 100000
    with Conn(s) as c:
        assert handshake(c, "/ws/echo", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]).status == 101
        c.send(frame(BINARY, raw_deflate(b"\x00" * 100000), rsv=0x40))  # at the limit: fine
        f = read_frame(c, rsv_ok=0x40)
        assert f is not None and f[1] == BINARY, f
        c.send(frame(BINARY, bomb, rsv=0x40))
        expect_close(c, 1009)


def test_deflate_corrupt_stream_is_1007(server):
    s = server(APP, "--workers", "1", "--ws-per-message-deflate")
    with Conn(s) as c:
        assert handshake(c, "/ws/echo", extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]).status == 101
        c.send(frame(TEXT, b"\xff\xff\xff\xff", rsv=0x40))
        expect_close(c, 1007)
