"""The WSGI write() callable when the client does not keep up: write() waits
(bounded by --write-high-water) while the socket is full and goes on when the
client reads; it raises OSError in the app when the client stays silent past
--io-timeout or goes away. The worker serves on either way."""
import socket
import time

import pytest

from conftest import Conn, build_request, fetch, scaled, wait_for

CHUNK = 65536


def progress(marker):
    lines = marker.read_text().splitlines() if marker.exists() else []
    wrote = [int(l.split()[1]) for l in lines if l.startswith("wrote ")]
    return (wrote[-1] if wrote else 0), [l for l in lines if not l.startswith("wrote ")]


@pytest.fixture
def srv(shared_server):
    return shared_server("router:app", "--workers", "2", "--write-high-water", "65536")


def test_write_waits_for_a_slow_client_then_goes_on(srv, tmp_path):
    marker = tmp_path / "m"
    n = 2048  # 128 MiB: far more than socket buffers and the high-water mark hold
    with Conn(srv, timeout=60) as c:
        c.send(build_request("GET", "/writer?mode=big&n=%d&marker=%s" % (n, marker), host="x"))
        wait_for(lambda: progress(marker)[0] >= 1, 10, what="the first write() to complete")
        time.sleep(1)
        stalled, ends = progress(marker)
        assert ends == [], ends
        assert stalled < 512, "write() completed %d x 64 KiB for a client that reads nothing" % stalled
        # the other worker answers meanwhile
        assert fetch(srv, "/hello", timeout=10).status == 200
        head = c.read_head(timeout=30)
        assert head.status == 200
        got = len(c.buf)
        c.buf.clear()
        deadline = time.monotonic() + scaled(120)
        while time.monotonic() < deadline:
            data = c.sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
            if progress(marker)[1] == ["done"] and got >= n * CHUNK:
                break
    wait_for(lambda: progress(marker)[1] == ["done"], 20, what="every write() to complete")
    assert progress(marker)[0] == n


def server_side_state(c):
    """The TCP state of the server's end of connection c (from /proc/net/tcp):
    "01" established, anything else once the server closed it."""
    cport = c.sock.getsockname()[1]
    sport = c.sock.getpeername()[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if int(local.split(":")[1], 16) == sport and int(remote.split(":")[1], 16) == cport:
                return state
    return None


def test_write_to_a_silent_client_times_out(shared_server, tmp_path):
    srv = shared_server("router:app", "--workers", "2", "--write-high-water", "65536",
                        "--io-timeout", "1")
    marker = tmp_path / "m"
    with Conn(srv, timeout=60) as c:
        c.send(build_request("GET", "/writer?mode=big&n=4096&marker=%s" % marker, host="x"))
        # --io-timeout 1: generous bounds on when write() gives up and when the
        # server lets go of the connection of a client that never reads
        wait_for(lambda: progress(marker)[1], 30, what="write() to give up on a silent client")
        assert progress(marker)[1][0].startswith("error "), progress(marker)
        assert progress(marker)[0] < 4096
        assert server_side_state(c) is not None
        wait_for(lambda: server_side_state(c) != "01", 30,
                 what="the server to close the connection of a client that never reads")
        # what was queued still arrives, then the end: a cut chunked body
        c.sock.settimeout(scaled(60))
        data = bytearray(c.buf)
        while True:
            d = c.sock.recv(1 << 20)
            if not d:
                break
            data += d
        assert data.startswith(b"HTTP/1.1 200 ")
        assert not data.endswith(b"0\r\n\r\n"), "a response cut short ended like a complete one"
    assert fetch(srv, "/hello", timeout=10).status == 200


def test_write_to_a_client_that_went_away_raises(srv, tmp_path):
    marker = tmp_path / "m"
    c = Conn(srv, timeout=60)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(build_request("GET", "/writer?mode=big&n=4096&marker=%s" % marker, host="x"))
    wait_for(lambda: progress(marker)[0] >= 1, 10, what="the first write() to complete")
    # a reset, not a clean close: the server's next write fails at once
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.sock.close()
    wait_for(lambda: progress(marker)[1], 30, what="write() to fail once the client is gone")
    assert progress(marker)[1][0].startswith("error "), progress(marker)
    assert progress(marker)[0] < 4096
    for _ in range(4):
        assert fetch(srv, "/hello", timeout=10).status == 200
