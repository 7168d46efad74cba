"""The fault-injection sweeps of test_faults.py over HTTP/2 (h2c by prior
knowledge) and over TLS, where the bridges take paths of their own: an
HTTP/2 request's body and protocol, the response trailers of an HTTP/2
stream, the `tls` extension of an ASGI scope (with a client certificate
chain), `https` in a WSGI environ. Each call that can fail in the request's
path fails in turn: the client gets the whole response, a 500, or once part
of the response is out, the stream reset (HTTP/2) or the connection cut; the
fault is in the log and the worker serves on. Then more of the bridges under
the same sweep: ASGI trailers over HTTP/1.1, a WebSocket's subprotocols and
queued messages, and a chunked response whose last chunk cannot be queued
(its keep-alive connection closed at once). Like test_faults.py, the tests
skip in a build without fault injection."""
import functools
import shutil
import time

import pytest
from conftest import Conn, build_request, host_header, scaled
from test_faults import BODY, SENT, fired, http, masked, sweep, ws_frame, ws_open
from test_http2 import INTERNAL_ERROR, H2
from test_tls import TlsConn, certs, client_ctx, tls_args  # noqa: F401 (certs: the fixture)

pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")


def h2(method, path, body, expected, trailers=None):
    """An exchange: one request on a fresh HTTP/2 connection; its outcome."""
    def exchange(srv):
        c = H2(srv.addr)
        try:
            r = c.get(path, method=method, body=body or None)
        finally:
            c.close()
        head = r["headers"] or {}
        if r["reset"] is not None:
            assert r["reset"] == INTERNAL_ERROR, r  # the stream alone, the response cut
            return "cut"
        assert r["ended"], r
        if head.get(":status") == "200" and bytes(r["data"]) == expected and r["trailers"] == trailers:
            return "whole"
        if head.get(":status") == "500" and bytes(r["data"]) == (b"" if method == "HEAD" else b"Internal Server Error\n"):
            return "500"
        raise AssertionError("unexpected response %r" % r)
    return exchange


H2_WSGI = {
    "list": h2("POST", "/list", BODY, b"list:" + BODY),
    "write": h2("POST", "/write", BODY, b"write:" + BODY),
    "sendfile": h2("GET", "/sendfile", b"", SENT),
}

H2_ASGI = {
    "one": h2("POST", "/one", BODY, b"one:" + BODY),
    "stream": h2("POST", "/stream", BODY, b"stream:" + BODY),
    "trailers": h2("POST", "/trailers", BODY, b"trailers:" + BODY, {"x-length": str(len(BODY))}),
    "head": h2("HEAD", "/one", b"", b""),
}


@pytest.mark.parametrize("app,case", [("faults:app", c) for c in sorted(H2_WSGI)]
                         + [("faults:asgi", c) for c in sorted(H2_ASGI)])
def test_h2_every_failing_call_is_answered(shared_server, app, case):
    srv = shared_server(app, "--workers", "1")
    exchange = (H2_WSGI if app == "faults:app" else H2_ASGI)[case]
    outcomes = sweep(srv, exchange)
    assert outcomes.get("500"), outcomes  # the request's set-up and the app's call can fail before the head
    assert exchange(srv) == "whole"


def tls_armer(ctx):
    def arm(srv, n):
        with TlsConn(srv, ctx) as c:
            r = c.request("GET", "/arm?%d" % n)
        assert r.status == 200, r
        return int(r.body)
    return arm


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (scripts/bootstrap installs it)")
@pytest.mark.parametrize("app,path", [("faults:app", "/list"), ("faults:asgi", "/one")])
def test_tls_every_failing_call_is_answered(server, shared_server, certs, app, path):  # noqa: F811
    """Over TLS with a client certificate: an ASGI scope's `tls` extension
    (the chain, the name) and a WSGI environ's https, failing call by call."""
    fired(shared_server("faults:app", "--workers", "1"), 0)  # skips without fault injection
    srv = server(app, *tls_args(certs, "--ca-certs", certs / "ca.pem", "--cert-reqs", "optional"), workers=1)
    ctx = client_ctx(certs, cert=True)
    conn = functools.partial(TlsConn, ctx=ctx)
    exchange = http("POST", path, BODY, path[1:].encode() + b":" + BODY, conn=conn)
    outcomes = sweep(srv, exchange, arm=tls_armer(ctx))
    assert outcomes.get("500"), outcomes
    assert exchange(srv) == "whole"


def test_asgi_trailers_over_http11_every_failing_call_is_answered(shared_server):
    """HTTP/1.1's trailer section after the last chunk: each failure before
    the head is a 500, after it the response is cut, and the trailer field
    is there when nothing failed."""
    srv = shared_server("faults:asgi", "--workers", "1")
    exchange = http("POST", "/trailers", BODY, b"trailers:" + BODY)
    outcomes = sweep(srv, exchange)
    assert outcomes.get("500") and outcomes.get("cut"), outcomes
    with Conn(srv) as c:
        c.send(build_request("POST", "/trailers", [("TE", "trailers")], body=BODY, host=host_header(c.addr)))
        r = c.response()
    assert r.body == b"trailers:" + BODY and r.chunked and r.trailers == [b"x-length: %d" % len(BODY)], r


def websocket_queued(srv):
    """An exchange: a handshake offering two subprotocols, then two messages
    in one write (the app is not yet waiting for the second: it is queued);
    the app's answer and close."""
    with Conn(srv) as c:
        r = ws_open(c, "/ws-queue", [("Sec-WebSocket-Protocol", "chat, superchat")])
        if isinstance(r, str):
            return r
        assert r.header("sec-websocket-protocol") == "chat", r
        c.send(masked(1, b"a") + masked(1, b"b"))
        deadline = time.monotonic() + scaled(10)
        frames = []
        while not frames or frames[-1][0] != 8:
            f = ws_frame(c, deadline)
            if f is None:
                return "cut"
            if f[0] not in (9, 10):  # not a ping of the server's
                frames.append(f)
    if frames == [(1, b"a+b"), (8, (1000).to_bytes(2, "big") + b"done")]:
        return "whole"
    if frames[-1][1][:2] == (1011).to_bytes(2, "big"):
        return "1011"
    raise AssertionError("unexpected frames %r" % frames)


def test_websocket_queue_and_subprotocols_every_failing_call_is_answered(shared_server):
    """The subprotocols of the scope, the one accepted, and a message queued
    while the app is busy: each failure before the accept is a 403 or a 500,
    after it a close with 1011."""
    srv = shared_server("faults:asgi", "--workers", "1")
    outcomes = sweep(srv, websocket_queued)
    assert (outcomes.get("403") or outcomes.get("500")) and outcomes.get("1011"), outcomes
    assert websocket_queued(srv) == "whole"


@pytest.mark.parametrize("app,path", [("faults:app", "/gen"), ("faults:asgi", "/stream")])
def test_chunked_response_without_its_last_chunk_is_closed_at_once(server, shared_server, app, path):
    """A keep-alive connection whose chunked response could not get its last
    chunk queued: closed at once (the client sees the body cut), not left
    open with the client waiting for the rest until --keep-alive ends it."""
    fired(shared_server("faults:app", "--workers", "1"), 0)  # skips without fault injection
    srv = server(app, "--keep-alive", "60", workers=1)
    exchange = http("POST", path, BODY, path[1:].encode() + b":" + BODY, conn=functools.partial(Conn, timeout=120))
    bound = scaled(20)

    def prompt(s):
        t = time.monotonic()
        outcome = exchange(s)
        assert time.monotonic() - t < bound, "the exchange took %.1f s (%s)" % (time.monotonic() - t, outcome)
        return outcome
    outcomes = sweep(srv, prompt)
    assert outcomes.get("cut") and outcomes.get("500"), outcomes


def resilient(srv):
    """An exchange with faults_resilient:app: whole if the body is a
    well-framed subset of its parts in order (the app carried on past a send
    that failed before writing anything), else 500 or cut."""
    with Conn(srv) as c:
        c.send(build_request("POST", "/x", body=BODY, host=host_header(c.addr)))
        try:
            r = c.response("POST", allow_truncated=True)
        except AssertionError as e:
            if "connection closed" not in str(e):
                raise  # a head that does not parse: bytes after a partial one
            return "cut"
    if r.status == 500 and r.body == b"Internal Server Error\n":
        return "500"
    assert r.status == 200, r
    if r.truncated:
        return "cut"
    rest = r.body
    for part in (b"a:", b"b:", BODY):
        rest = rest[len(part):] if rest.startswith(part) else rest
    assert rest == b"", (r, r.body)
    return "whole"


def test_app_that_carries_on_after_a_failed_send_gets_no_bytes_after_a_cut(shared_server):
    """A send that failed once part of the response was out cuts the
    connection then and there: what the app sends next goes nowhere."""
    srv = shared_server("faults_resilient:app", "--workers", "1")
    outcomes = sweep(srv, resilient)
    assert outcomes.get("cut"), outcomes
    assert resilient(srv) == "whole"
