"""src/http's own failure paths, driven by fault injection (src/http/fault.h,
built into `make coverage` and `make test-asan` only): an allocation, a
system call, an nghttp2 or OpenSSL call that fails. For each exchange, the
n-th such site from the connection's accept on fails, for n = 1, 2, ...
until the exchange passes fewer sites than n. Whichever fails, the client
gets a clear answer: the whole response (the failure was in code that can do
without), a 503, the connection closed, or on HTTP/2 the stream reset or the
connection ended with GOAWAY; the server logs the failure once, nothing
crashes, and the next exchange is whole. A server's start is swept the same
way (GN_FAULT_HTTP_START): it ends with one clear line and exit status 1.
In a build without fault injection the tests skip and say so."""
import re
import socket
import time

import pytest

from conftest import Conn, build_request, chunked, host_header, log_since, scaled, wait_for

MAX_SITES = 300  # far more than any exchange here passes: the sweep must end before
BODY = b"0123456789abcdef" * 1024  # 16 KiB: the body store grows
BIG = b"".join(b"%07d\n" % i for i in range(3000))  # the apps' /big
SERVER_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] \[\d+\] \[[A-Z]+\] ", re.M)
LOG_MARKERS = ("Fatal", "Segmentation", "AddressSanitizer", "runtime error", "Traceback")


def arm(srv, n):
    """Arms the server's next accepted connection to fail its n-th site (0:
    none); answers the faults fired so far."""
    with Conn(srv) as c:
        c.send(build_request("GET", "/arm?%d" % n, [("Connection", "close")], host=host_header(c.addr)))
        r = c.response()
    if r.status == 404:
        pytest.skip("needs a build with fault injection (GN_FAULT: make coverage, make test-asan)")
    assert r.status == 200, r
    return int(r.body)


def http(method, path, body, expected, headers=()):
    """An HTTP/1.1 exchange on a fresh connection; its outcome."""
    def exchange(srv):
        with Conn(srv) as c:
            try:
                c.send(build_request(method, path, headers, body=body, host=host_header(c.addr)))
            except OSError:
                return "closed"  # closed before the whole request was sent
            try:
                r = c.response(method, allow_truncated=True)
            except AssertionError as e:
                if "connection closed" not in str(e):
                    raise
                return "closed"
            if r.status == 200 and not r.truncated and r.body == expected:
                return "whole"
            if r.status == 503 and r.header("Connection") == "close":
                return "503"
            if r.status == 500 and r.body == b"Internal Server Error\n":
                return "500"  # the bridge could not queue the application's answer
            if r.status == 200 and r.truncated:
                return "cut"
            raise AssertionError("unexpected response %r %r" % (r, r.body[:200]))
    return exchange


def sweep(srv, exchange):
    """Runs the exchange with its n-th site failing, for every n it reaches;
    checks each outcome; returns {outcome: count}."""
    outcomes = {}
    before = arm(srv, 0)
    for n in range(1, MAX_SITES):
        offset = len(srv.stderr_bytes())
        assert arm(srv, n) == before
        try:
            outcome = exchange(srv)
        except AssertionError as e:
            raise AssertionError("site %d failing: %s\n%s" % (n, e, log_since(srv, offset)))
        after = arm(srv, 0)
        log = log_since(srv, offset)
        assert not any(m in log for m in LOG_MARKERS), (n, log)
        if after == before:
            # Fewer sites than n: nothing failed, the exchange is whole.
            assert outcome == "whole", (n, outcome, log)
            assert n > 1, "the exchange passed no site: the sweep is not armed"
            return outcomes
        assert after == before + 1, (n, before, after)
        before = after
        assert log.count("fault injected: ") == 1, (n, log)
        if outcome != "whole":
            log = wait_for(lambda: SERVER_LINE.search(log_since(srv, offset)) and log_since(srv, offset), 5,
                           what="the server's line about site %d (%s)" % (n, outcome))
            assert len(SERVER_LINE.findall(log)) == 1, (n, outcome, log)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    raise AssertionError("still failing after %d sites" % MAX_SITES)


WSGI = {
    "get": http("GET", "/echo", b"", b"echo:"),
    "post": http("POST", "/echo", BODY, b"echo:" + BODY),
    "chunked": http("POST", "/echo", chunked(BODY, size=4000), b"echo:" + BODY, [("Transfer-Encoding", "chunked")]),
    "big": http("GET", "/big", b"", BIG),
    "big-head": http("GET", "/echo", b"", b"echo:", [("X-Big-%d" % i, "v" * 1000) for i in range(20)]),
}


@pytest.mark.parametrize("case", sorted(WSGI))
def test_wsgi_every_failing_site_is_answered(shared_server, case):
    srv = shared_server("http_faults:app", "--workers", "1")
    outcomes = sweep(srv, WSGI[case])
    assert WSGI[case](srv) == "whole"


# ---- HTTP/2 ----------------------------------------------------------------

def h2_exchange(path, body=None, expected=b"", trailers=None):
    """One stream on a fresh prior-knowledge HTTP/2 connection; its outcome:
    "whole", "503" (the server's answer instead of the application's), "reset
    N" (RST_STREAM with code N), "goaway N" (the connection ended with
    GOAWAY code N) or "closed" (ended before any frame of an answer)."""
    def exchange(srv):
        from test_http2 import H2
        try:
            c = H2(srv.addr)
            sid = c.request(path, method="POST" if body is not None else "GET", body=body)
            r = c.responses[sid]
            c.wait(lambda: r["ended"] or r["reset"] is not None or c.goaway is not None, timeout=10)
        except (ConnectionError, BrokenPipeError):
            return "closed"
        finally:
            c.close()
        status = r["headers"] and r["headers"].get(":status")
        if r["ended"] and status == "200" and bytes(r["data"]) == expected and r["trailers"] == trailers:
            return "whole"
        if r["ended"] and status == "503" and bytes(r["data"]) == b"Service Unavailable\n":
            return "503"
        if r["ended"] and status == "500" and bytes(r["data"]) == b"Internal Server Error\n":
            return "500"  # the bridge could not queue the application's answer
        if r["reset"] is not None:
            return "reset %d" % r["reset"]
        if c.goaway is not None:
            return "goaway %d" % c.goaway[0]
        if c.closed and r["headers"] is None:
            return "closed"
        if c.closed:
            return "cut"  # nothing more could be sent: the connection ends
        raise AssertionError("unexpected answer %r, %d bytes %r (goaway %r)" % (
            {k: v for k, v in r.items() if k != "data"}, len(r["data"]), bytes(r["data"][-40:]), c.goaway))
    return exchange


H2_CASES = {
    "get": h2_exchange("/echo", expected=b"echo:"),
    "post": h2_exchange("/echo", body=BODY, expected=b"echo:" + BODY),
    "big": h2_exchange("/big", expected=BIG),
}


@pytest.mark.parametrize("kind,case", [(k, c) for k in ("wsgi", "asgi") for c in sorted(H2_CASES)])
def test_h2_every_failing_site_is_answered(shared_server, kind, case):
    pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
    srv = shared_server("http_faults:" + ("app" if kind == "wsgi" else "asgi"), "--workers", "1")
    outcomes = sweep(srv, H2_CASES[case])
    # Never PROTOCOL_ERROR: the client did nothing wrong.
    assert set(outcomes) <= {"whole", "500", "503", "reset 2", "goaway 2", "closed", "cut"}, outcomes
    assert H2_CASES[case](srv) == "whole"
