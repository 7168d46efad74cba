"""Work follows idle workers (src/http/group.h): requests that arrive on
keep-alive connections of a worker busy in the application are answered by an
idle worker; a worker at its connection limit does not leave a new client
unanswered while another has room. No timing: each test asserts which worker
answered, or that an answer came at all."""
import os
import signal
import time
import uuid

import pytest

from conftest import Conn, child_pids, in_threads, scaled, wait_for

APPS = [pytest.param(("router:app", "/cpu?ms=300", "/hello"), id="wsgi"),
        pytest.param(("asgi_app:app", "/cpu?ms=300", "/fixed"), id="asgi")]
PORTS = [pytest.param((), id="shared-socket"), pytest.param(("--reuse-port",), id="reuse-port")]


def warm_pool(srv, n, first):
    """n keep-alive connections opened and used once while the server is idle,
    as a proxy's upstream pool or a client session does. The bound on each
    answer is generous: on a loaded machine 8 CPU-bound requests on 2 workers
    can take long, and the point is which worker answers, not when."""
    conns = [Conn(srv, timeout=60) for _ in range(n)]
    for c in conns:
        assert c.request("GET", first).status == 200
    time.sleep(0.3)
    return conns


@pytest.mark.tsan
@pytest.mark.parametrize("ports", PORTS)
@pytest.mark.parametrize("app", APPS)
def test_warm_pool_cpu_requests_run_in_both_workers(server, app, ports):
    srv = server(app[0], "--workers", "2", "--mode", "interpreters", *ports)
    conns = warm_pool(srv, 8, app[2])
    try:
        answers = in_threads(lambda c: c.request("GET", app[1]).json(), [(c,) for c in conns])
        interps = {a["interp"] for a in answers}
        assert len(interps) == 2, "8 CPU-bound requests on a warm pool all ran in interpreter(s) %s" % interps
    finally:
        for c in conns:
            c.close()


@pytest.mark.tsan
@pytest.mark.parametrize("app", APPS)
def test_long_request_does_not_hold_up_other_connections(server, app):
    """While one worker runs a long request, short requests on the other
    connections of its pool are answered, all before the long one ends. The
    long request spins in the application, holding its worker, until a
    later request releases it (tests/apps/_wsgicheck.py meet), so the order
    is the test's, not the clock's."""
    srv = server(app[0], "--workers", "2", "--mode", "interpreters")
    conns = warm_pool(srv, 4, app[2])
    key = "long-%s" % uuid.uuid4().hex
    meet = "/meet?key=%s&n=2&timeout=%d" % (key, int(scaled(60)))
    try:
        long_conn, others = conns[0], conns[1:]
        long_conn.send("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % meet)
        for _ in range(5):
            for c in others:
                assert c.request("GET", app[2]).status == 200
        assert long_conn.poll_data(0) is None, "the long request ended before the short ones"
        release = others[0].request("GET", meet).json()
        held = long_conn.response().json()
        assert release["met"] and held["met"], (release, held)
        assert release["interp"] != held["interp"], (release, held)
    finally:
        for c in conns:
            c.close()


def open_one_by_one(srv, n, conns):
    """n keep-alive connections opened one after another, each answered
    before the next opens (added to conns)."""
    for i in range(n):
        c = Conn(srv, timeout=5)
        conns.append(c)
        r = c.request("GET", "/hello")
        assert r.status == 200, "connection %d: %r" % (i + 1, r)


@pytest.mark.tsan
@pytest.mark.parametrize("mode", ["interpreters", "processes"])
def test_no_stall_at_one_workers_connection_limit(server, mode):
    """180 keep-alive connections opened one after another on an idle server
    with 2 workers of 100 connections each: every one is answered, although
    the kernel's wake-ups keep going to the same worker, and no connection is
    closed to make room while the other worker has some (in processes mode,
    the workers are two processes on one socket)."""
    srv = server("router:app", "--workers", "2", "--mode", mode, "--max-connections", "100",
                 "--keep-alive", "60")
    conns = []
    try:
        open_one_by_one(srv, 180, conns)
        closed = [i for i, c in enumerate(conns) if c.closed_within(0.01)]
        assert closed == [], "connections %s closed while a worker had room" % closed
        assert "are not enough: closing" not in srv.stderr_text()
    finally:
        for c in conns:
            c.close()


def test_restarted_worker_process_leaves_no_room_behind(server):
    """A worker process killed while it had room is forgotten: once both
    processes are full, new clients are answered (the longest idle
    connections make room) instead of being passed to the dead one."""
    srv = server("router:app", "--workers", "2", "--mode", "processes", "--max-connections", "100",
                 "--keep-alive", "60")
    before = child_pids(srv.pid)
    assert len(before) == 2
    os.kill(min(before), signal.SIGKILL)
    wait_for(lambda: "serving again" in srv.stderr_text(), 10, what="the replacement ready")
    conns = []
    try:
        open_one_by_one(srv, 230, conns)
        assert "are not enough: closing" in srv.stderr_text()
    finally:
        for c in conns:
            c.close()


def fill(srv, conns, n, then=None):
    """n keep-alive connections, one request each (added to conns)."""
    for _ in range(n):
        c = Conn(srv, timeout=5)
        conns.append(c)
        assert c.request("GET", "/hello").status == 200
        if then:
            c.send(then)


def test_beyond_capacity_idle_connections_make_room(server):
    """40 idle keep-alive connections fill 2 workers of 20: 10 new clients
    are answered at once, as many of the longest idle connections closed
    for them."""
    srv = server("router:app", "--workers", "2", "--max-connections", "20", "--keep-alive", "60")
    conns = []
    try:
        fill(srv, conns, 40)
        late = [Conn(srv, timeout=10) for _ in range(10)]
        for c in late:
            c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        for i, c in enumerate(late):
            assert c.response().status == 200, "new client %d" % i
        time.sleep(0.3)
        closed = sum(c.closed_within(0.01) for c in conns)
        assert closed == 10, "%d idle connections closed for 10 new ones" % closed
        assert "are not enough: closing" in srv.stderr_text()
        conns += late
    finally:
        for c in conns:
            c.close()


def test_beyond_capacity_waits_and_is_answered_once_others_close(server):
    """Connections in the middle of a request are not idle: beyond them, new
    clients wait in the backlog and are answered once some close."""
    srv = server("router:app", "--workers", "2", "--max-connections", "20", "--header-timeout", "60",
                 "--keep-alive", "60")
    conns = []
    try:
        fill(srv, conns, 40, then="GET /hello HTTP/1.1\r\n")  # the next head, unfinished
        late = [Conn(srv, timeout=10) for _ in range(10)]
        for c in late:
            c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        assert all(c.poll_data(0) is None for c in late), "served beyond --max-connections"
        for c in conns[:10]:
            c.close()
        for i, c in enumerate(late):
            assert c.response().status == 200, "late connection %d never answered" % i
        conns += late
    finally:
        for c in conns:
            c.close()
