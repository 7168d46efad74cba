"""The bridges' error paths, driven by fault injection (src/bridges/fault.h,
built into `make coverage` and `make test-asan` only): for each request
shape, the n-th CPython call that can fail in the request's path fails with
MemoryError, for n = 1, 2, ... until the request makes fewer calls than n.
Whichever call fails, the client gets a clear answer: the whole response
(the failure was in code that can do without), a 500, a WebSocket closed
with 1011, or once part of the response is out, the connection cut; every
outcome but the whole response has the MemoryError in the log, and the
worker serves on (the next arming request). In a build without fault
injection (the plain end-to-end tier's is the release build) the tests skip
and say so."""
import os
import signal
import time

import pytest

from conftest import REPO, Conn, build_request, chunked, fetch, host_header, log_since, scaled, wait_for

BODY = b"first line\nsecond part"
SENT = (REPO / "tests" / "apps" / "faults.py").read_bytes()
BIG = b"x" * 100 + b"\n" + os.urandom(1100 * 1024).hex().encode()[:1100 * 1024]  # over the spill threshold
MAX_CALLS = 400  # far more than any request here makes: the sweep must end before


def fired(srv, n):
    """Arms the worker's next request to fail its n-th call (0: none);
    answers the faults fired so far."""
    r = fetch(srv, "/arm?%d" % n)
    if r.status == 404:
        pytest.skip("needs a build with fault injection (GN_FAULT: make coverage, make test-asan)")
    assert r.status == 200, r
    return int(r.body)


def http(method, path, body, expected, headers=(), version="HTTP/1.1", conn=Conn):
    """An exchange: one request on a fresh connection (conn(srv)); its outcome."""
    def exchange(srv):
        with conn(srv) as c:
            c.send(build_request(method, path, headers, body=body, version=version, host=host_header(c.addr)))
            try:
                r = c.response(method, allow_truncated=True)
            except AssertionError as e:
                if "connection closed" not in str(e):
                    raise
                return "cut"  # part of the head was out
            if r.status == 200 and not r.truncated and r.body == expected:
                return "whole"
            if r.status == 500 and r.body == (b"" if method == "HEAD" else b"Internal Server Error\n"):
                return "500"
            if r.status == 200 and r.truncated:
                return "cut"
            if version == "HTTP/1.0" and r.status == 200 and expected.startswith(r.body):
                return "cut"  # a body that ends with the connection: a cut looks like its end
            raise AssertionError("unexpected response %r %r" % (r, r.body[:200]))
    return exchange


def ws_frame(c, deadline):
    head = c._read_exact(2, deadline, "a frame header")
    if len(head) < 2:
        return None
    n = head[1] & 0x7f
    assert n < 126, head
    return head[0] & 0x0f, c._read_exact(n, deadline, "a payload")


def masked(opcode, payload):
    key = b"\x01\x02\x03\x04"
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_open(c, path, headers=()):
    """Sends a WebSocket handshake to path on c: the 101's head, or the
    outcome ("cut", "403", "500", "503") of a handshake that did not succeed."""
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), *headers,
               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    c.send(build_request("GET", path, headers, host=host_header(c.addr)))
    try:
        r = c.read_head()
    except AssertionError as e:
        if "connection closed" not in str(e):
            raise
        return "cut"
    if r.status in (403, 500, 503):
        return str(r.status)  # before the accept: 403, as an app raising there gets
    assert r.status == 101, r
    return r


def websocket(srv, path="/ws"):
    """An exchange: the handshake, one text message, the app's answers (on
    /ws-client-closes a second message, then the client closes)."""
    with Conn(srv) as c:
        r = ws_open(c, path)
        if isinstance(r, str):
            return r
        c.send(masked(1, b"hi"))
        deadline = time.monotonic() + scaled(10)
        frames = []
        while True:
            f = ws_frame(c, deadline)
            if f is None:
                return "cut"
            if f[0] in (9, 10):
                continue  # a ping (the server's --ws-ping-interval on a slow machine)
            frames.append(f)
            if f[0] == 8:
                break
            if path == "/ws-client-closes" and len(frames) == 2:
                c.send(masked(1, b"again"))
            if path == "/ws-client-closes" and len(frames) == 3:
                c.send(masked(8, (1001).to_bytes(2, "big") + b"bye"))
        if path == "/ws-client-closes" and frames == [(1, b"ws:hi"), (2, b"ws:"), (1, b"got:again"),
                                                      (8, (1001).to_bytes(2, "big"))]:
            return "whole"
        code = int.from_bytes(frames[-1][1][:2], "big")
        if frames == [(1, b"ws:hi"), (2, b"ws:"), (8, (1000).to_bytes(2, "big") + b"done")]:
            return "whole"
        if code == 1011:
            return "1011"
        raise AssertionError("unexpected frames %r" % frames)


def sweep(srv, exchange, arm=fired):
    """Runs the exchange with its n-th call failing, for every n it reaches;
    checks each outcome; returns {outcome: count}. arm(srv, n) arms the
    worker as fired() does (which does it over plain HTTP/1.1)."""
    outcomes = {}
    before = arm(srv, 0)
    for n in range(1, MAX_CALLS):
        offset = len(srv.stderr_bytes())
        assert arm(srv, n) == before
        try:
            outcome = exchange(srv)
        except AssertionError as e:
            raise AssertionError("call %d failing: %s\n%s" % (n, e, log_since(srv, offset)))
        after = arm(srv, 0)
        if after == before:
            # Fewer calls than n: nothing failed, the response is whole.
            assert outcome == "whole", (n, outcome, log_since(srv, offset))
            assert n > 3, "the request made only %d calls: the sweep is not armed" % (n - 1)
            return outcomes
        assert after == before + 1, (n, before, after)
        before = after
        if outcome != "whole":
            log = wait_for(lambda: "MemoryError" in log_since(srv, offset) and log_since(srv, offset),
                           5, what="the MemoryError of call %d (%s) in the log" % (n, outcome))
            assert "Fatal" not in log and "Segmentation" not in log and "AddressSanitizer" not in log, log
            assert "SystemError" not in log, log  # no call made over a pending exception
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    raise AssertionError("still failing after %d calls" % MAX_CALLS)


WSGI = {
    "list": http("POST", "/list", BODY, b"list:" + BODY),
    "gen": http("POST", "/gen", BODY, b"gen:" + BODY),
    "closing": http("POST", "/closing", BODY, b"closing:" + BODY),
    "write": http("POST", "/write", BODY, b"write:" + BODY),
    "file": http("POST", "/file", BODY, b"file:" + BODY),
    "chunked": http("POST", "/list", chunked(BODY), b"list:" + BODY, [("Transfer-Encoding", "chunked")]),
    "spilled": http("POST", "/gen", BIG, b"gen:" + BIG),
    "head": http("HEAD", "/list", b"", b""),
    "lines": http("POST", "/lines", BODY, b"list:" + BODY),
    "iter": http("POST", "/iter", BODY, b"list:" + BODY),
    "sendfile": http("GET", "/sendfile", b"", SENT),
    "exc-info": http("POST", "/exc-info", BODY, b"exc-info:" + BODY),
    "http10": http("POST", "/gen", BODY, b"gen:" + BODY, version="HTTP/1.0"),
}


@pytest.mark.parametrize("case", sorted(WSGI))
def test_wsgi_every_failing_call_is_answered(shared_server, case):
    srv = shared_server("faults:app", "--workers", "1")
    outcomes = sweep(srv, WSGI[case])
    assert outcomes.get("500"), outcomes  # the environ and the app's call can fail before the head
    assert WSGI[case](srv) == "whole"


ASGI = {
    "one": http("POST", "/one", BODY, b"one:" + BODY),
    "stream": http("POST", "/stream", BODY, b"stream:" + BODY),
    "chunked": http("POST", "/stream", chunked(BODY), b"stream:" + BODY, [("Transfer-Encoding", "chunked")]),
    "head": http("HEAD", "/one", b"", b""),
    "websocket": websocket,
    "websocket-client-closes": lambda srv: websocket(srv, "/ws-client-closes"),
    "pathsend": http("GET", "/pathsend", b"", SENT),
    "http10": http("POST", "/stream", BODY, b"stream:" + BODY, version="HTTP/1.0"),
}


@pytest.mark.parametrize("case", sorted(ASGI))
def test_asgi_every_failing_call_is_answered(shared_server, case):
    srv = shared_server("faults:asgi", "--workers", "1")
    outcomes = sweep(srv, ASGI[case])
    assert outcomes.get("500") or outcomes.get("403"), outcomes
    assert ASGI[case](srv) == "whole"


def start_with_fault(server, app, n):
    """A one-worker server whose worker's bridge set-up fails its n-th
    call (GN_FAULT_START); its outcome: "serves" (fewer calls than n),
    or the exit status and what it logged."""
    srv = server(app, "--mode", "interpreters", env={"GN_FAULT_START": str(n)}, wait=None, workers=1)
    deadline = time.monotonic() + scaled(30)
    while srv.running() and "workers ready in" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.describe()
        time.sleep(0.05)
    if srv.running():
        assert fetch(srv, "/one" if "asgi" in app else "/list").status in (200, 405), srv.describe()
        assert "fault injected" not in srv.stderr_text(), srv.describe()
        srv.stop()
        return "serves", srv.stderr_text()
    return srv.wait_exit(), srv.stderr_text()


@pytest.mark.parametrize("app,bridge", [("faults:app", "WSGI"), ("faults:asgi", "ASGI")])
def test_worker_setup_failing_call_ends_the_server_cleanly(server, shared_server, app, bridge):
    """Each call of a worker's bridge set-up that can fail, failing in turn:
    the worker does not start, the server says why in one line and exits 1
    (3 when it is ASGI's lifespan startup that failed, as a startup that
    raises does); no crash. Past the last call, the server serves."""
    fired(shared_server("faults:app", "--workers", "1"), 0)  # skips without fault injection
    outcomes = {}
    for n in range(1, 100):
        outcome, log = start_with_fault(server, app, n)
        if outcome == "serves":
            assert n > 3 and outcomes.get(1), "only %d calls failed: the start is not armed" % (n - 1)
            # ASGI: the two calls that run lifespan startup come last.
            assert outcomes.get(3, 0) == (2 if bridge == "ASGI" else 0), outcomes
            return
        assert "Fatal" not in log and "Segmentation" not in log and "AddressSanitizer" not in log, log
        assert log.count("fault injected: MemoryError") == 1, (n, log)
        line = "cannot set up the %s bridge: MemoryError" % bridge
        if outcome == 3:
            assert bridge == "ASGI" and log.count("ASGI lifespan startup failed") == 1, (n, log)
        else:
            assert outcome == 1, (n, outcome, log)
            assert log.count(line) == 1 and "Traceback" not in log, (n, log)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    raise AssertionError("the set-up still fails after 100 calls")


def test_worker_process_setup_failure_ends_the_server_cleanly(server, shared_server):
    """--mode processes: a worker process whose bridge cannot be set up
    is reported by the supervisor in one line, and the server exits 1."""
    fired(shared_server("faults:app", "--workers", "1"), 0)  # skips without fault injection
    srv = server("faults:app", "--mode", "processes", env={"GN_FAULT_START": "1"}, wait=None, workers=1)
    assert srv.wait_exit(30) == 1, srv.describe()
    log = srv.stderr_text()
    assert log.count("worker process 0: cannot set up the WSGI bridge: MemoryError") == 1, log
    assert log.count("fault injected: MemoryError") == 1 and "Traceback" not in log, log


@pytest.mark.parametrize("trigger", ["max-requests", "reload"])
@pytest.mark.parametrize("app,bridge", [("faults:app", "WSGI"), ("faults:asgi", "ASGI")])
def test_replacement_that_cannot_start_leaves_the_old_worker_serving(server, shared_server, app, bridge, trigger):
    """GN_FAULT_START_AFTER=1: the first worker starts, its replacement's
    set-up fails (after --max-requests, or on SIGHUP): one line says so, and
    the old worker goes on serving, not replaced again."""
    fired(shared_server("faults:app", "--workers", "1"), 0)  # skips without fault injection
    args = ("--max-requests", "2") if trigger == "max-requests" else ()
    srv = server(app, "--mode", "interpreters", *args, env={"GN_FAULT_START": "1", "GN_FAULT_START_AFTER": "1"},
                 workers=1)
    path = "/one" if bridge == "ASGI" else "/list"
    statuses = [fetch(srv, path).status for _ in range(2)]
    if trigger == "reload":
        srv.send_signal(signal.SIGHUP)
    what = "replacing a worker" if trigger == "max-requests" else "reload"
    line = "%s failed, the old workers go on serving: worker 0: cannot set up the %s bridge: MemoryError" % (
        what, bridge)
    wait_for(lambda: line in srv.stderr_text(), scaled(10), what="the failed replacement's line")
    statuses += [fetch(srv, path).status for _ in range(4)]
    assert set(statuses) <= {200, 405} and len(set(statuses)) == 1, (statuses, srv.describe())
    log = srv.stderr_text()
    assert log.count(line) == 1 and log.count("fault injected: MemoryError") == 1, log
    assert "Traceback" not in log and "Segmentation" not in log, log
    assert srv.stop() == 0, srv.describe()
