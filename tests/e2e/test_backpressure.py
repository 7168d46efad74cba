"""Slow or greedy clients never block other clients of the same worker;
--max-connections and --write-high-water bound what one worker takes on."""
import re
import resource
import socket
import time

import pytest

from conftest import Conn, build_request, fetch, proc_rss_kib, run_gorgon, scaled


@pytest.fixture
def one_worker(server):
    return server("router:app", "--workers", "1", "--header-timeout", "10",
                  "--keep-alive", "10")


def test_half_sent_head_does_not_block_others(one_worker):
    with Conn(one_worker) as stalled:
        stalled.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Half: ")
        time.sleep(0.2)
        t0 = time.monotonic()
        for _ in range(5):
            assert fetch(one_worker, "/hello", timeout=5).status == 200
        assert time.monotonic() - t0 < scaled(3)
        assert stalled.poll_data(0) is None, "stalled client was answered or closed early"


def test_half_sent_body_does_not_block_others(one_worker):
    with Conn(one_worker) as stalled:
        stalled.send(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        time.sleep(0.2)
        for _ in range(3):
            assert fetch(one_worker, "/hello", timeout=5).status == 200


def test_client_not_reading_big_stream_does_not_block_others(one_worker):
    with Conn(one_worker) as greedy:
        greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.send(build_request("GET", "/big?mib=200&chunked=1", host="x"))
        time.sleep(0.5)
        t0 = time.monotonic()
        for _ in range(5):
            assert fetch(one_worker, "/hello", timeout=5).status == 200
        assert time.monotonic() - t0 < scaled(3)
        # the greedy client still gets its data once it reads
        r = greedy.read_head(timeout=5)
        assert r.status == 200


def test_pipelining_client_not_reading_does_not_block_others(one_worker):
    with Conn(one_worker) as greedy:
        greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.sock.setblocking(False)
        req = build_request("GET", "/big?mib=1", host="x")
        sent = 0
        try:
            for _ in range(100):
                greedy.sock.send(req)
                sent += 1
        except BlockingIOError:
            pass
        greedy.sock.setblocking(True)
        time.sleep(0.5)
        assert fetch(one_worker, "/hello", timeout=5).status == 200


def test_stream_to_client_not_reading_is_paused(server, tmp_path):
    # --write-high-water: the server stops pulling from the app's iterable
    # while the client does not read (it does not buffer the whole body).
    srv = server("router:app", "--workers", "1", "--write-high-water", "65536")
    progress = tmp_path / "progress"
    with Conn(srv) as greedy:
        greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.send(build_request("GET", "/big?mib=300&chunked=1&progress=%s" % progress,
                                  host="x"))
        time.sleep(2)
        produced = int(progress.read_text() or 0) if progress.exists() else 0
        assert fetch(srv, "/hello", timeout=5).status == 200
    assert produced < 40, "server pulled %d MiB from the app for a client that reads nothing" % produced


@pytest.mark.nosan
def test_write_buffer_memory_bounded_when_client_does_not_read(server):
    srv = server("router:app", "--workers", "1", "--write-high-water", "65536")
    assert fetch(srv, "/big?mib=2").status == 200  # warm up allocations
    before = proc_rss_kib(srv.pid)
    with Conn(srv) as greedy:
        greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.send(build_request("GET", "/big?mib=300&chunked=1&fresh=1", host="x"))
        time.sleep(2)
        grown_mib = (proc_rss_kib(srv.pid) - before) / 1024
        assert fetch(srv, "/hello", timeout=5).status == 200
    assert grown_mib < 64, "server buffered %.0f MiB for a client that does not read" % grown_mib


@pytest.fixture
def maxconn(server):
    return server("router:app", "--workers", "1", "--max-connections", "2",
                  "--keep-alive", "30", "--header-timeout", "30")


def test_max_connections_waits_in_backlog(maxconn):
    """Two connections in the middle of a request head are not idle: a third
    client waits in the backlog (nothing is refused, nothing served beyond
    the bound) until one of them ends."""
    a, b = Conn(maxconn), Conn(maxconn)
    try:
        assert a.request("GET", "/hello").status == 200
        assert b.request("GET", "/hello").status == 200
        a.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # the head goes on...
        b.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        third = Conn(maxconn)  # connect() succeeds: nothing is refused
        try:
            third.send(build_request("GET", "/hello-list", host="x"))
            assert third.poll_data(1.0) is None, "a third connection was served beyond --max-connections 2"
            a.send(b"Connection: close\r\n\r\n")
            assert a.response(timeout=5).status == 200
            r = third.response(timeout=5)
            assert r.status == 200 and r.body == b"Hello, world!\n"
            b.send(b"\r\n")
            assert b.response(timeout=5).status == 200, "the connection still in its head was dropped"
        finally:
            third.close()
    finally:
        a.close()
        b.close()


def test_idle_connections_make_room_at_the_bound(maxconn):
    """At the bound, a new client is served at once: the connection idle
    the longest between requests is closed for it (as nginx reuses its
    keep-alive connections), with one warning in the log."""
    a, b = Conn(maxconn), Conn(maxconn)
    try:
        assert a.request("GET", "/hello").status == 200
        time.sleep(0.05)  # a has been idle longer than b
        assert b.request("GET", "/hello").status == 200
        for i in range(3):
            with Conn(maxconn, timeout=5) as c:
                assert c.request("GET", "/hello").status == 200, "new client %d" % i
        assert a.closed_within(scaled(3)), "the longest idle connection was not the one closed"
        text = maxconn.stderr_text()
        # One warning, not one per client (they come at most every 10 s).
        assert 1 <= len(re.findall(r"are not enough: closing 1 idle keep-alive connection ", text)) < 3, text
    finally:
        a.close()
        b.close()


def test_max_connections_frees_slot_after_keep_alive_close(maxconn):
    for _ in range(6):
        with Conn(maxconn) as c:
            assert c.request("GET", "/hello", headers=[("Connection", "close")]).status == 200
            assert c.closed_within(scaled(3))
    assert fetch(maxconn, "/hello", timeout=5).status == 200


def open_files_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc/%d/limits" % pid)


def test_connection_bound_sized_from_the_open_file_limit(server):
    """Without --max-connections: the soft open-file limit is raised to the
    hard one, and each worker may hold an equal share of it (the log says
    how many)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2048:
        pytest.skip("the hard open-file limit (%s) leaves nothing to raise to" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        srv = server("router:app", "--workers", "2")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert open_files_limit(srv.pid) == (hard, hard)
    m = re.search(r"connections: up to (\d+) per worker \(open-file limit (\d+) per process\)", srv.stderr_text())
    assert m, srv.stderr_text()
    assert int(m.group(2)) == hard and int(m.group(1)) == (hard - 256) // 2


def test_explicit_max_connections_beyond_the_limit_is_warned(server):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit to exceed")
    srv = server("router:app", "--workers", "2", "--max-connections", str(hard))
    assert "is more than the open-file limit" in srv.stderr_text(), srv.stderr_text()
    assert fetch(srv, "/hello").status == 200


@pytest.mark.parametrize("app,path", [("router:app", "/stream-tiny"), ("asgi_app:app", "/tiny")],
                         ids=["wsgi", "asgi"])
def test_many_small_pieces_to_a_client_that_is_behind(server, app, path):
    """A big piece fills the socket, then thousands of 6-byte pieces come while
    the client does not read: the output queue fills by count, not bytes; the
    app waits, and every piece arrives once, in order."""
    big, n = 8 << 20, 3000
    srv = server(app, "--workers", "1")
    with Conn(srv, timeout=60) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request("GET", "%s?big=%d&n=%d" % (path, big, n)))
        time.sleep(0.5)  # not reading meanwhile
        r = c.response()
    assert r.status == 200 and r.chunked, r
    assert r.body == b"b" * big + b"".join(b"%05d\n" % i for i in range(n))


def test_max_connections_total_answers_503_beyond(server):
    """--max-connections-total 10 with 2 workers of 100 each: 10 keep-alive
    connections are served and held; the 11th client gets a 503 with
    Connection: close and the connection ends; once one of the 10 closes, a
    new client is served, and the held ones were never closed for room."""
    srv = server("router:app", "--workers", "2", "--max-connections", "100",
                 "--max-connections-total", "10", "--keep-alive", "60")
    assert "up to 10 in all (--max-connections-total)" in srv.stderr_text()
    held = []
    try:
        for i in range(10):
            c = Conn(srv, timeout=5)
            held.append(c)
            assert c.request("GET", "/hello").status == 200, "connection %d" % (i + 1)
        for _ in range(3):
            with Conn(srv, timeout=5) as late:
                r = late.request("GET", "/hello")
                assert r.status == 503, r
                assert (r.header("Connection") or "").lower() == "close", r.headers
                late.wait_closed()
        held.pop(0).close()
        # The server counts the close when it reads the end of stream: a new
        # client may still meet the bound until then, never after.
        deadline = time.monotonic() + scaled(5)
        while True:
            with Conn(srv, timeout=5) as c:
                status = c.request("GET", "/hello").status
            assert status in (200, 503)
            if status == 200 or time.monotonic() > deadline:
                break
        assert status == 200, "the bound was not freed by a close"
        for i, c in enumerate(held):
            assert c.request("GET", "/hello").status == 200, "held connection %d" % i
    finally:
        for c in held:
            c.close()


def test_max_connections_total_is_shared_out_over_processes(server):
    """With 2 worker processes, --max-connections-total 6 is 3 per process:
    of 8 connections held open, at most 6 are served and the rest get 503."""
    srv = server("router:app", "--mode", "processes", "--workers", "2",
                 "--max-connections-total", "6", "--keep-alive", "60")
    assert "up to 3 per process (--max-connections-total over 2 processes)" in srv.stderr_text()
    held, statuses = [], []
    try:
        for _ in range(8):
            c = Conn(srv, timeout=5)
            held.append(c)
            statuses.append(c.request("GET", "/hello").status)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) <= 6 and statuses.count(503) >= 2, statuses
    finally:
        for c in held:
            c.close()


def test_max_connections_total_must_not_be_negative():
    r = run_gorgon("router:app", "--max-connections-total", "-1")
    assert r.returncode == 2 and b"--max-connections-total must be at least 0" in r.stderr
