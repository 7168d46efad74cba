"""WebSocket backpressure, both ways. A client that stops reading while the app
sends makes the app's `await send()` wait (the server does not buffer without
bound), and the sends go on, intact and in order, once it reads. A client that
sends while the app does not receive stops being read (the server queues a few
messages, not all of them), and everything sent reaches the app once it
receives."""
import hashlib
import os
import select
import socket
import time

import pytest

from conftest import Conn, read_lines, scaled, wait_for
from test_asgi_websocket_endings import CLOSE, TEXT, handshake

BINARY = 2
HIGH_WATER = 256 * 1024


@pytest.fixture
def srv(shared_server):
    return shared_server("asgi_app:app", "--workers", "1", "--write-high-water", str(HIGH_WATER))


def read_frame(c, deadline):
    head = c._read_exact(2, deadline, "a frame header")
    assert len(head) == 2, "connection closed without a close frame"
    n = head[1] & 0x7f
    if n == 126:
        n = int.from_bytes(c._read_exact(2, deadline, "a length"), "big")
    elif n == 127:
        n = int.from_bytes(c._read_exact(8, deadline, "a length"), "big")
    payload = c._read_exact(n, deadline, "a payload")
    assert len(payload) == n, "connection closed inside a frame"
    return head[0] & 0x0f, payload


def frame(opcode, payload):
    """A client frame, masked with a zero key (so the payload goes as it is)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def sent_count(marker):
    return len(read_lines(marker))


def test_sends_to_a_client_that_does_not_read_wait_then_go_on(srv, tmp_path):
    n, size = 256, 60000  # 15 MiB: more than the socket buffers and the high-water mark hold
    marker = tmp_path / "sent"
    c = Conn(srv)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert handshake(c, "/ws/flood?n=%d&size=%d&marker=%s" % (n, size, marker)).status == 101
    wait_for(lambda: sent_count(marker) > 0, 10, what="the app's first send")
    # The app's sends stop where the queue passes the high-water mark and the
    # kernel's buffers are full: not all n of them.
    settled, last = time.monotonic(), -1
    while time.monotonic() - settled < scaled(1.0):
        now = sent_count(marker)
        if now != last:
            settled, last = time.monotonic(), now
        assert now < n, "the app sent all %d messages (%d bytes) to a client that reads nothing" % (n, n * size)
        time.sleep(0.05)
    paused_at = last
    assert paused_at * size < 12 * 1024 * 1024, paused_at
    # Reading again: every message, in order and intact, then "done" and the close.
    deadline = time.monotonic() + scaled(30)
    for i in range(n):
        opcode, payload = read_frame(c, deadline)
        assert opcode == BINARY and len(payload) == size, (i, opcode, len(payload))
        assert int.from_bytes(payload[:4], "big") == i and payload[4:] == bytes([i % 256]) * (size - 4), i
    assert read_frame(c, deadline) == (TEXT, b"done")
    opcode, payload = read_frame(c, deadline)
    assert opcode == CLOSE and int.from_bytes(payload[:2], "big") == 1000
    assert sent_count(marker) == n
    c.send(frame(CLOSE, payload[:2]))
    assert c.closed_within(scaled(5))


def test_messages_from_a_client_wait_while_the_app_does_not_receive(srv, tmp_path):
    size, most = 8192, 4096  # at most 32 MiB offered
    go = tmp_path / "go"
    c = Conn(srv)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    assert handshake(c, "/ws/late-reader?go=%s" % go).status == 101
    payloads = [i.to_bytes(4, "big") + os.urandom(size - 4) for i in range(most)]
    messages = [frame(BINARY, p) for p in payloads]
    # Send without blocking until the server stops taking them for a second.
    c.sock.setblocking(False)
    sent, offset = 0, 0
    while sent < most:
        try:
            offset += c.sock.send(messages[sent][offset:])
        except BlockingIOError:
            if not select.select([], [c.sock], [], scaled(1.0))[1]:
                break
            continue
        if offset == len(messages[sent]):
            sent, offset = sent + 1, 0
    assert sent < most, "the server took all %d messages (%d bytes) while the app received none" % (
        most, most * size)
    # The app receives: the rest goes through, and every message arrived.
    go.touch()
    c.sock.setblocking(True)
    c.sock.settimeout(scaled(30))
    c.sock.sendall(messages[sent][offset:] + b"".join(messages[sent + 1:]) + frame(TEXT, b"end"))
    deadline = time.monotonic() + scaled(30)
    opcode, payload = read_frame(c, deadline)
    digest = hashlib.sha256(b"".join(payloads)).hexdigest()
    assert (opcode, payload.decode()) == (TEXT, "%d %d %s" % (most, most * size, digest))
    opcode, payload = read_frame(c, deadline)
    assert opcode == CLOSE and int.from_bytes(payload[:2], "big") == 1000
    c.close()
