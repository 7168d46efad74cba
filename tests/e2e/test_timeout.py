"""--timeout: a request whose application code runs too long is answered 504
by the server (from C, not by the stuck interpreter), logged with its method,
path, worker and Python stack, and capacity comes back: Python code is
interrupted between bytecodes (gorgon.RequestTimeout), a worker stuck in C
(time.sleep) is replaced. Requests elsewhere are not disturbed. Every wait
is bounded; the bounds are generous against a loaded machine."""
import re
import time

import pytest

from conftest import fetch, in_threads, scaled

WSGI = "hangs:app"
ASGI = "hangs:asgi"


def start(server, app, *args, workers=2):
    return server(app, "--timeout", "2", "--workers", str(workers), "--mode", "interpreters", *args,
                  workers=workers)


def timed_fetch(srv, target):
    t0 = time.monotonic()
    r = fetch(srv.addr, target, timeout=scaled(15))
    return r, time.monotonic() - t0


def wait_log(srv, pattern, what, timeout=15):
    deadline = time.monotonic() + scaled(timeout)
    while not re.search(pattern, srv.stderr_text()):
        assert srv.running(), srv.describe()
        assert time.monotonic() < deadline, "no %s in the log\n%s" % (what, srv.describe())
        time.sleep(0.05)


def both_workers_answer(srv):
    """Two requests at once, each holding its worker for a moment: both are
    answered, by two different workers (the whole capacity is back)."""
    def one(_):
        return fetch(srv.addr, "/sleep?s=0.5", timeout=scaled(10))

    deadline = time.monotonic() + scaled(20)
    while True:
        rs = in_threads(one, [(0,), (1,)], timeout=scaled(20))
        assert all(r.status == 200 for r in rs), [(r.status, r.body) for r in rs]
        ids = {r.body.split()[0] for r in rs}
        if ids == {b"0", b"1"}:
            return rs
        # Both went to one worker's queue (the kernel's choice): try again.
        assert time.monotonic() < deadline, [r.body for r in rs]


def test_python_loop_is_interrupted_and_answered_504(server):
    srv = start(server, WSGI)
    r, took = timed_fetch(srv, "/spin?s=10")
    assert r.status == 504 and r.body == b"Gateway Timeout\n", (r.status, r.body)
    assert 1.5 <= took <= scaled(4), took
    assert r.has_token("connection", "close")
    wait_log(srv, r"back from the request past --timeout", "return of the interrupted worker")
    text = srv.stderr_text()
    assert re.search(r"worker \d: GET /spin\?s=10 ran past --timeout \(2s\): answered 504", text), text
    # The stack of the stuck thread, faulthandler's way, points at the loop.
    assert re.search(r'File ".*hangs\.py", line \d+ in spin\n  File ".*hangs\.py", line \d+ in _app', text), text
    assert "stuck in C" not in text, text
    both_workers_answer(srv)
    assert srv.stop() == 0, srv.describe()


def test_other_requests_are_not_disturbed(server):
    srv = start(server, WSGI)

    def one(target):
        return fetch(srv.addr, target, timeout=scaled(15))

    spun, plain = in_threads(one, [("/spin?s=10",), ("/sleep?s=0.3",)], timeout=scaled(20))
    assert spun.status == 504, spun.status
    assert plain.status == 200, (plain.status, plain.body)
    for _ in range(10):
        assert fetch(srv.addr, "/").status == 200
    assert srv.stop() == 0, srv.describe()


@pytest.mark.parametrize("mode", [("--mode", "interpreters"), ("--mode", "processes")],
                         ids=["interpreters", "processes"])
def test_worker_stuck_in_c_is_replaced(server, mode):
    srv = server(WSGI, "--timeout", "2", "--workers", "2", *mode, workers=2)
    before = {r.body for r in both_workers_answer(srv)}
    r, took = timed_fetch(srv, "/sleep?s=10")
    assert r.status == 504, (r.status, r.body)
    assert 1.5 <= took <= scaled(4), took
    wait_log(srv, r"stuck in C code past --timeout \(in a call that does not return to Python", "stuck worker")
    text = srv.stderr_text()
    assert re.search(r"GET /sleep\?s=10 ran past --timeout \(2s\): answered 504", text), text
    assert re.search(r'File ".*hangs\.py", line \d+ in _app', text), text
    # A new worker (a new interpreter, or a new process) took its place.
    deadline = time.monotonic() + scaled(20)
    while True:
        after = {r.body for r in both_workers_answer(srv)}
        if after - before:
            break
        assert time.monotonic() < deadline, (before, after, srv.describe())
    assert srv.stop() == 0, srv.describe()


def test_response_that_began_is_cut(server):
    srv = start(server, WSGI)
    t0 = time.monotonic()
    r = fetch(srv.addr, "/stream?s=10", timeout=scaled(15), allow_truncated=True)
    took = time.monotonic() - t0
    assert took <= scaled(6), (took, srv.describe())
    assert r.status == 200 and b"ended" not in r.body, (r.status, r.body)
    wait_log(srv, r"GET /stream\?s=10 ran past --timeout \(2s\) after its response began: connection closed",
             "cut response")
    both_workers_answer(srv)
    assert srv.stop() == 0, srv.describe()


def test_asgi_response_that_began_is_cut(server):
    """ASGI: a loop blocked once the head is out cannot be told with a
    504; the connection is closed, short of the body, and the log says so."""
    srv = start(server, ASGI)
    t0 = time.monotonic()
    r = fetch(srv.addr, "/stream?s=10", timeout=scaled(15), allow_truncated=True)
    assert time.monotonic() - t0 <= scaled(6), srv.describe()
    assert r.status == 200 and r.body == b"began ", (r.status, r.body)
    wait_log(srv, r"worker \d: GET /stream\?s=10 ran past --timeout \(2s\): connection closed", "cut response")
    both_workers_answer(srv)
    assert srv.stop() == 0, srv.describe()


@pytest.mark.parametrize("target", ["/spin?s=10", "/await-spin?s=10", "/wait?s=10"])
def test_asgi(server, target):
    """A loop blocked in Python (at once, or after a first wait) is
    interrupted; a request that only waits is cancelled while the loop runs
    on. Either way the request gets its 504 and the worker serves on."""
    srv = start(server, ASGI)
    r, took = timed_fetch(srv, target)
    assert r.status == 504 and r.body == b"Gateway Timeout\n", (r.status, r.body)
    assert 1.5 <= took <= scaled(4), took
    path = re.escape(target)
    wait_log(srv, r"worker \d: GET %s ran past --timeout \(2s\): answered 504" % path, "timeout line")
    if "spin" in target:
        wait_log(srv, r'File ".*hangs\.py", line \d+ in spin', "stack")
    text = srv.stderr_text()
    assert "stuck in C" not in text and "Exception in ASGI application" not in text, text
    both_workers_answer(srv)
    assert srv.stop() == 0, srv.describe()


def test_off_by_default(server):
    srv = server(WSGI, "--workers", "1", workers=1)
    r, took = timed_fetch(srv, "/spin?s=2.5")
    assert r.status == 200 and took >= 2.4, (r.status, took)
    assert "--timeout" not in srv.stderr_text()
    assert srv.stop() == 0, srv.describe()


def test_asgi_loop_blocked_outside_a_request_is_interrupted(server):
    """A callback of the application's that blocks the event loop when no
    request is under way: logged as such and interrupted; the worker serves
    on."""
    srv = start(server, ASGI)
    r = fetch(srv.addr, "/background-spin?s=10", timeout=scaled(15))
    assert r.status == 200, (r.status, r.body)
    wait_log(srv, r"worker \d: its event loop has been in application code for more than 2s \(--timeout\)",
             "the blocked loop's line")
    wait_log(srv, r"worker \d: the call past --timeout, where it was; interrupting it", "the interruption")
    both_workers_answer(srv)
    assert srv.stop() == 0, srv.describe()
