"""How a WebSocket ends when the app or the peer does not close it: an app
that returns with the socket open closes it with 1000, one that raises with
1011; an app that returns or raises before accepting gets the handshake
refused with 403; a peer that goes away without a close frame reaches the
app as a disconnect with 1006. The worker serves on after each."""
import os
import time

import pytest

from conftest import Conn, build_request, fetch, host_header, read_lines, scaled, wait_for

TEXT, CLOSE = 1, 8


@pytest.fixture
def srv(shared_server):
    return shared_server("asgi_app:app", "--workers", "1")


def handshake(c, path):
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    c.send(build_request("GET", path, headers, host=host_header(c.addr)))
    return c.read_head()


def masked(opcode, payload):
    key = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + \
        bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frames_until_close(c, timeout=10):
    """[(opcode, payload)] up to and including the close frame."""
    deadline = time.monotonic() + scaled(timeout)
    out = []
    while True:
        head = c._read_exact(2, deadline, "a frame header")
        assert len(head) == 2, "connection closed without a close frame: %r" % out
        n = head[1] & 0x7f
        assert n < 126
        payload = c._read_exact(n, deadline, "a payload")
        out.append((head[0] & 0x0f, payload))
        if head[0] & 0x0f == CLOSE:
            return out


@pytest.mark.parametrize("path,code", [("/ws/return-open", 1000), ("/ws/raise-open", 1011)])
def test_app_ending_with_the_socket_open(srv, path, code):
    with Conn(srv) as c:
        assert handshake(c, path).status == 101
        frames = frames_until_close(c)
        assert frames[0] == (TEXT, b"accepted"), frames
        assert int.from_bytes(frames[-1][1][:2], "big") == code, frames
        c.send(masked(CLOSE, frames[-1][1][:2]))
        assert c.closed_within(scaled(6)), "TCP connection left open after the close"
    assert fetch(srv, "/fixed").body == b"Hello, world!\n"


@pytest.mark.parametrize("path", ["/ws/return-before-accept", "/ws/raise-before-accept"])
def test_app_ending_before_accept_is_403(srv, path):
    with Conn(srv) as c:
        r = handshake(c, path)
        assert r.status == 403, r
        assert c.closed_within(scaled(5))
    assert fetch(srv, "/fixed").body == b"Hello, world!\n"


def test_peer_gone_without_close_frame_is_1006(srv, tmp_path):
    marker = tmp_path / "ws"
    c = Conn(srv)
    assert handshake(c, "/ws/echo?marker=%s" % marker).status == 101
    c.send(masked(TEXT, b"hi"))
    deadline = time.monotonic() + scaled(10)
    head = c._read_exact(2, deadline, "the echo")
    assert c._read_exact(head[1] & 0x7f, deadline, "the echo") == b"hi"
    c.sock.close()  # no close frame
    wait_for(lambda: read_lines(marker), 10, what="the app's websocket.disconnect")
    assert read_lines(marker) == ["disconnect 1006"], read_lines(marker)
    assert fetch(srv, "/fixed").body == b"Hello, world!\n"
