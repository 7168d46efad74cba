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
import os
import re
import shutil
import signal
import ssl
import time

import pytest

from conftest import Conn, build_request, chunked, fetch, free_port, host_header, log_since, scaled, wait_for
from test_faults import ws_open

MAX_SITES = 300  # far more than any exchange here passes: the sweep must end before
BODY = b"0123456789abcdef" * 1024  # 16 KiB: the body store grows
BIG = b"".join(b"%07d\n" % i for i in range(3000))  # the apps' /big
SERVER_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] \[\d+\] \[[A-Z]+\] ", re.M)
APP_ERROR = re.compile(r"Error handling request|Exception in ASGI application")
READY = re.compile(r"ready (\(\d+ workers? each\) )?in \d+ ms")
LOG_MARKERS = ("Fatal", "Segmentation", "AddressSanitizer", "runtime error")


def arm(srv, n, via=None):
    """Arms the server's next accepted connection to fail its n-th site (0:
    none); answers the faults fired so far. via: the address to ask on (the
    server's first by default)."""
    with Conn(via or srv) as c:
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


def whole(outcome):
    return set(outcome.split("+")) == {"whole"}


# Outcomes where the server did without what failed, silently: the client
# got all it asked for (an echo sent uncompressed, as RFC 7692 allows).
QUIET = {"uncompressed"}


def sweep(srv, exchange, via=None):
    """Runs the exchange with its n-th site failing, for every n it reaches;
    checks each outcome; returns {outcome: count}."""
    outcomes = {}
    before = arm(srv, 0, via)
    for n in range(1, MAX_SITES):
        offset = len(srv.stderr_bytes())
        assert arm(srv, n, via) == before
        try:
            outcome = exchange(srv)
        except AssertionError as e:
            raise AssertionError("site %d failing: %s\n%s" % (n, e, log_since(srv, offset)))
        after = arm(srv, 0, via)
        log = log_since(srv, offset)
        assert not any(m in log for m in LOG_MARKERS), (n, log)
        if after == before:
            # Fewer sites than n: nothing failed, the exchange is whole.
            assert whole(outcome), (n, outcome, log)
            assert n > 1, "the exchange passed no site: the sweep is not armed"
            return outcomes
        assert after == before + 1, (n, before, after)
        before = after
        assert log.count("fault injected: ") == 1, (n, log)
        if os.environ.get("SWEEP_DEBUG"):
            print("SWEEP", n, outcome, re.findall(r"fault injected: (\S+)", log), SERVER_LINE.sub("", log).replace("\n", " | ")[:300])
        if not whole(outcome) and outcome not in QUIET:
            deadline = time.monotonic() + scaled(5)
            while not SERVER_LINE.search(log) and time.monotonic() < deadline:
                time.sleep(0.02)
                log = log_since(srv, offset)
            assert SERVER_LINE.search(log), ("no line about site %d" % n, outcome, log)
            # One line, and the bridge's about the application's call if
            # the failure reached it (its write() or send() raised).
            lines = [line for line in log.splitlines() if SERVER_LINE.match(line)]
            app = [line for line in lines if APP_ERROR.search(line)]
            assert len(lines) - len(app) == 1 or lines == app and len(app) == 1, (n, outcome, log)
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
    assert set(outcomes) <= {"500", "503", "closed", "cut"}, outcomes
    assert WSGI[case](srv) == "whole"


ASGI = {
    "post": http("POST", "/echo", BODY, b"echo:" + BODY),
    "chunked": http("POST", "/echo", chunked(BODY, size=4000), b"echo:" + BODY, [("Transfer-Encoding", "chunked")]),
    "big": http("GET", "/big", b"", BIG),
}


@pytest.mark.parametrize("case", sorted(ASGI))
def test_asgi_every_failing_site_is_answered(shared_server, case):
    srv = shared_server("http_faults:asgi", "--workers", "1")
    outcomes = sweep(srv, ASGI[case])
    assert set(outcomes) <= {"500", "503", "closed", "cut"}, outcomes
    assert ASGI[case](srv) == "whole"


# ---- HTTP/2 ----------------------------------------------------------------

def h2_exchange(path, body=None, expected=b"", trailers=None):
    """One stream on a fresh prior-knowledge HTTP/2 connection; its outcome
    (h2_outcome)."""
    def exchange(srv):
        from test_http2 import H2
        c = None
        try:
            c = H2(srv.addr)
            sid = c.request(path, method="POST" if body is not None else "GET", body=body)
            return h2_outcome(c, c.responses[sid], expected, trailers)
        except (ConnectionError, BrokenPipeError):
            return "closed"
        finally:
            if c is not None:
                c.close()
    return exchange


def h2_together(srv, streams):
    """Streams opened on a fresh connection of srv, all ending in the last
    bytes of one write, so that the server reads them together (read one
    at a time, each would run on the connection's loop, which would be idle
    again for the next) and one is answered by the other worker
    (http/h2_remote.h). streams: (path, method, headers, body, expected,
    trailers) each; their outcomes (h2_outcome), sorted and joined with
    "+"."""
    from test_http2 import H2
    c = None
    try:
        c = H2(srv.addr)
        sids = [c.request(path, method=method, headers=headers, end=False, flush=False)
                for path, method, headers, *_ in streams]
        for sid, (_, _, _, body, _, _) in zip(sids, streams):
            if body:
                c.conn.send_data(sid, body)
        for sid in sids:
            c.conn.end_stream(sid)
        c.flush()
        return "+".join(sorted(h2_outcome(c, c.responses[sid], expected, trailers)
                               for sid, (*_, expected, trailers) in zip(sids, streams)))
    except (ConnectionError, BrokenPipeError):
        return "closed"
    finally:
        if c is not None:
            c.close()


def h2_two_streams(srv):
    """Two streams at once on a fresh connection of a two-worker server, so
    that one is answered by the other worker: a POST of BODY, a GET with
    trailers asked for (ASGI) or not (h2_together)."""
    trailers = {"x-one": "1", "x-two": "2"} if srv.app.endswith(":asgi") else None
    return h2_together(srv, [("/slow-echo", "POST", (), BODY, b"echo:" + BODY, None),
                             ("/trailers" if trailers else "/slow-echo", "GET", (), None, b"echo:", trailers)])


def h2c_exchange(path, expected):
    """A GET that asks for Upgrade: h2c on a fresh connection; its outcome:
    "503" or "closed" before the switch, else stream 1's (h2_outcome)."""
    def exchange(srv):
        from test_http2 import upgrade_request
        try:
            c, head = upgrade_request(srv.addr, path=path)
        except (AssertionError, ConnectionError):
            return "closed"
        try:
            if head.startswith("HTTP/1.1 503 "):
                return "503"
            assert head.startswith("HTTP/1.1 101 "), head
            c.flush()  # the client's preface and SETTINGS
            c.responses[1] = {"headers": None, "data": bytearray(), "ended": False, "reset": None,
                              "trailers": None}
            return h2_outcome(c, c.responses[1], expected, None)
        except (ConnectionError, BrokenPipeError):
            return "closed"
        finally:
            c.close()
    return exchange


def h2_outcome(c, r, expected, trailers):
    """Waits for stream r's end; "whole", "500" or "503" (the server's answer
    instead of the application's), "no trailers" (the whole response, its
    trailers lost), "reset N" (RST_STREAM with code N), "goaway N" (the
    connection ended with GOAWAY code N), "closed" (ended before any frame
    of an answer) or "cut" (ended in the middle of one)."""
    c.wait(lambda: r["ended"] or r["reset"] is not None or c.goaway is not None, timeout=10,
           closed_ok=True)
    status = r["headers"] and r["headers"].get(":status")
    if r["ended"] and status == "200" and bytes(r["data"]) == expected:
        return "whole" if r.get("trailers") == trailers else "no trailers"
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


H2_CASES = {
    "get": h2_exchange("/echo", expected=b"echo:"),
    "post": h2_exchange("/echo", body=BODY, expected=b"echo:" + BODY),
    "big": h2_exchange("/big", expected=BIG),
    "h2c": h2c_exchange("/echo", expected=b"echo:"),
}


# Never PROTOCOL_ERROR: the client did nothing wrong.
H2_OUTCOMES = {"whole", "500", "503", "reset 2", "goaway 2", "closed", "cut"}


@pytest.mark.parametrize("kind,case", [(k, c) for k in ("wsgi", "asgi") for c in sorted(H2_CASES)])
def test_h2_every_failing_site_is_answered(shared_server, kind, case):
    pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
    srv = shared_server("http_faults:" + ("app" if kind == "wsgi" else "asgi"), "--workers", "1")
    outcomes = sweep(srv, H2_CASES[case])
    assert set(outcomes) <= H2_OUTCOMES, outcomes
    assert H2_CASES[case](srv) == "whole"


def test_h2_trailers_every_failing_site_is_answered(shared_server):
    """ASGI's response trailers on HTTP/2: the stream ends without them when
    they cannot be sent (one line says so)."""
    pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
    srv = shared_server("http_faults:asgi", "--workers", "1")
    exchange = h2_exchange("/trailers", expected=b"echo:", trailers={"x-one": "1", "x-two": "2"})
    outcomes = sweep(srv, exchange)
    assert set(outcomes) <= H2_OUTCOMES | {"no trailers"} and outcomes.get("no trailers"), outcomes
    assert exchange(srv) == "whole"


# ---- WebSocket ---------------------------------------------------------------

def masked(opcode, payload, fin=True, rsv=0):
    key = b"\x01\x02\x03\x04"
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | rsv | opcode, 0x80 | len(payload)]) + key + \
        bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_handshake(c, extensions=None):
    """The opening handshake on c; None once switched, else the outcome:
    "500" or "503" (refused before the accept) or "closed"."""
    r = ws_open(c, "/ws", [("Sec-WebSocket-Extensions", extensions)] if extensions else ())
    if isinstance(r, str):
        return "closed" if r == "cut" else r
    return None


def ws_exchange(c, frames):
    """Sends the frames, reads the server's answer: (first byte, payload),
    or the outcome when the server closed: "closed", or its close code."""
    try:
        c.send(frames)
    except OSError:
        return "closed"
    deadline = time.monotonic() + scaled(10)
    head = c._read_exact(2, deadline, "a frame header")
    if len(head) < 2:
        return "closed"
    n = head[1] & 0x7f
    if n == 126:
        n = int.from_bytes(c._read_exact(2, deadline, "a length"), "big")
    payload = c._read_exact(n, deadline, "a payload")
    if head[0] & 0x0f == 8:
        return str(int.from_bytes(payload[:2], "big"))
    return head[0], payload


def websocket(srv):
    """The handshake, a message in two fragments, its echo, the client's
    close; the outcome: "whole", or ws_handshake's or ws_exchange's."""
    with Conn(srv) as c:
        outcome = ws_handshake(c)
        if outcome:
            return outcome
        got = ws_exchange(c, masked(1, b"hel", fin=False) + masked(0, b"lo"))
        if isinstance(got, str):
            return got
        assert (got[0] & 0x0f, got[1]) == (1, b"echo:hello"), got
        c.send(masked(8, (1000).to_bytes(2, "big")))
        return "whole"


def websocket_deflate(srv):
    """As websocket(), with permessage-deflate: a compressed message (its
    frames' payloads one raw deflate stream) and the compressed echo; the
    server may also answer uncompressed, which RFC 7692 allows."""
    import zlib
    with Conn(srv) as c:
        outcome = ws_handshake(c, "permessage-deflate")
        if outcome:
            return outcome
        comp = zlib.compressobj(wbits=-15)
        data = comp.compress(b"hello" * 20) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        got = ws_exchange(c, masked(1, data[:-4], rsv=0x40))
        if isinstance(got, str):
            return got
        payload = got[1]
        if got[0] & 0x40:
            payload = zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
        assert (got[0] & 0x0f, payload) == (1, b"echo:" + b"hello" * 20), got
        c.send(masked(8, (1000).to_bytes(2, "big")))
        return "whole" if got[0] & 0x40 else "uncompressed"


def test_websocket_deflate_every_failing_site_is_answered(shared_server):
    """permessage-deflate: a message that cannot be inflated for want of
    memory closes with 1011; an echo that cannot be deflated goes out
    uncompressed."""
    srv = shared_server("http_faults:asgi", "--workers", "1", "--ws-per-message-deflate")
    outcomes = sweep(srv, websocket_deflate)
    assert set(outcomes) <= {"500", "503", "1011", "closed", "uncompressed"}, outcomes
    assert websocket_deflate(srv) == "whole"


def test_websocket_every_failing_site_is_answered(shared_server):
    srv = shared_server("http_faults:asgi", "--workers", "1")
    outcomes = sweep(srv, websocket)
    assert set(outcomes) <= {"whole", "500", "503", "1011", "closed"}, outcomes
    assert websocket(srv) == "whole"


# ---- TLS, and the server's start -------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (scripts/bootstrap installs it)")
    from test_http2 import make_certs
    return make_certs(tmp_path_factory.mktemp("faultcerts"))


def tls_get(cert):
    """GET /echo over TLS on a fresh connection: "whole", "500" or "closed"."""
    def exchange(srv):
        ctx = ssl.create_default_context(cafile=str(cert))
        with Conn(srv) as c:
            try:
                c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
            except (ssl.SSLError, ConnectionError):
                return "closed"
            return tls_echo(c)
    return exchange


def tls_echo(c):
    """GET /echo on TLS connection c: "whole", "500" (the bridge could not
    queue the application's answer) or "closed"."""
    try:
        c.send(build_request("GET", "/echo", host=host_header(c.addr)))
        r = c.response()
    except (ssl.SSLError, ConnectionError):
        return "closed"
    except AssertionError as e:
        if "connection closed" not in str(e):
            raise
        return "closed"
    if r.status == 500 and r.body == b"Internal Server Error\n":
        return "500"
    assert r.status == 200 and r.body == b"echo:", r
    return "whole"


def test_tls_connection_every_failing_site_is_answered(server, shared_server, certs, tmp_path):
    """Armed over a unix socket (never TLS), swept over TLS."""
    arm(shared_server("http_faults:app", "--workers", "1"), 0)  # skips without fault injection
    cert, key = certs
    sock = str(tmp_path / "arm.sock")
    srv = server("http_faults:app", "--bind", "127.0.0.1:%d" % free_port(), "--bind", "unix:" + sock,
                 "--certfile", cert, "--keyfile", key, workers=1)
    outcomes = sweep(srv, tls_get(cert), via=sock)
    assert set(outcomes) <= {"500", "closed"} and outcomes.get("closed"), outcomes
    assert tls_get(cert)(srv) == "whole"


def start_with_fault(server, n, args):
    """A server whose start fails its n-th site (GN_FAULT_HTTP_START); its
    outcome: "serves" (fewer sites than n), or the exit status and what it
    logged."""
    srv = server("http_faults:app", *args, env={"GN_FAULT_HTTP_START": str(n)}, wait=None)
    deadline = time.monotonic() + scaled(30)
    while srv.running() and not READY.search(srv.stderr_text()):
        assert time.monotonic() < deadline, srv.describe()
        time.sleep(0.05)
    if srv.running():
        r = fetch(srv, "/echo")  # a TLS port answers plain HTTP with its 400
        assert r.body == b"echo:" or b"This port speaks HTTPS" in r.body, (r, srv.describe())
        srv.stop()
        return "serves", srv.stderr_text()
    return srv.wait_exit(), srv.stderr_text()


@pytest.mark.parametrize("mode", ["interpreters", "processes", "tls"])
def test_start_every_failing_site_ends_the_server_cleanly(server, shared_server, certs, mode):
    """Each site of the server's start failing in turn (the TLS context,
    the worker loops, what worker processes share): the server says why in
    one line and exits 1; no crash. Past the last site, it serves."""
    arm(shared_server("http_faults:app", "--workers", "1"), 0)  # skips without fault injection
    args = {"interpreters": ("--mode", "interpreters", "--workers", "2"),
            "processes": ("--mode", "processes", "--workers", "1"),
            "tls": ("--mode", "interpreters", "--workers", "1", "--certfile", certs[0], "--keyfile", certs[1])}[mode]
    failed = 0
    for n in range(1, 30):
        outcome, log = start_with_fault(server, n, args)
        if outcome == "serves" and "fault injected: " not in log:
            assert failed >= 2, "only %d sites failed: the start is not armed" % failed
            return
        assert log.count("fault injected: ") == 1, (n, log)
        if os.environ.get("SWEEP_DEBUG"):
            print("SWEEP", n, outcome, re.findall(r"fault injected: (\S+)", log), SERVER_LINE.sub("", log).replace("\n", " | ")[:300])
        assert not any(m in log for m in LOG_MARKERS) and "Traceback" not in log, (n, log)
        if outcome == "serves":  # a failure it can do without: said once
            assert len(re.findall(r"\[WARNING\] ", log)) == 1, (n, log)
        else:
            assert outcome == 1 and re.search(r"\[(ERROR|CRITICAL)\] ", log), (n, outcome, log)
        failed += 1
    raise AssertionError("the start still fails after 30 sites")


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_h2_stream_of_another_worker_every_failing_site_is_answered(shared_server, kind):
    """A stream handed to another worker: whichever site fails, the owner
    answers it itself, resets it, or ends the connection, as for its own."""
    pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
    srv = shared_server("http_faults:" + ("app" if kind == "wsgi" else "asgi"), "--workers", "2")
    outcomes = sweep(srv, h2_two_streams)
    allowed = H2_OUTCOMES | {"no trailers"}
    assert all(set(o.split("+")) <= allowed for o in outcomes), outcomes
    assert h2_two_streams(srv) == "whole+whole"


def test_h2_wsgi_write_every_failing_site_is_answered(shared_server):
    """WSGI's write() past --write-high-water on an HTTP/2 stream waits in
    the call for the client's window (gn_h2__flush_blocking)."""
    pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
    srv = shared_server("http_faults:app", "--workers", "1", "--write-high-water", "16384")
    exchange = h2_exchange("/write", expected=BIG * 3)
    outcomes = sweep(srv, exchange)
    assert set(outcomes) <= H2_OUTCOMES, outcomes
    assert exchange(srv) == "whole"


def test_reload_hand_over_every_failing_site_is_answered(server, shared_server, certs, tmp_path):
    """An idle TLS keep-alive connection across a reload (SIGHUP): the
    retiring worker hands it to a worker that serves on. Whichever site
    fails from its accept on (its request, the new workers' start, the hand
    over, the adoption), the reload ends, done or failed with the old
    workers left serving; the connection's next request is answered, or
    finds it closed, as the keep-alive timeout would have closed it (clients
    retry on that, RFC 9112 9.3.1); one line says what failed."""
    arm(shared_server("http_faults:app", "--workers", "1"), 0)  # skips without fault injection
    cert, key = certs
    sock = str(tmp_path / "arm.sock")
    srv = server("http_faults:app", "--mode", "interpreters", "--bind", "127.0.0.1:%d" % free_port(),
                 "--bind", "unix:" + sock, "--certfile", cert, "--keyfile", key, "--max-connections-total", "50",
                 workers=2)  # a group of loops: one hands its connections to another
    ctx = ssl.create_default_context(cafile=str(cert))

    def ended():
        text = srv.stderr_text()
        return len(re.findall(r"reloaded in \d+ ms|reload failed", text))

    outcomes = {}
    before = arm(srv, 0, sock)
    for n in range(1, 60):
        offset = len(srv.stderr_bytes())
        assert arm(srv, n, sock) == before
        with Conn(srv) as c:
            try:
                c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
            except (ssl.SSLError, ConnectionError):
                first = "closed"
            else:
                first = tls_echo(c)
            reloads = ended()
            srv.send_signal(signal.SIGHUP)
            wait_for(lambda: ended() > reloads, 30, what="the reload's end")
            outcome = first if first != "whole" else tls_echo(c)
        after = arm(srv, 0, sock)
        log = log_since(srv, offset)
        assert not any(m in log for m in LOG_MARKERS) and "Traceback" not in log, (n, log)
        if after == before:
            assert outcome == "whole" and "reload failed" not in log, (n, outcome, log)
            assert n > 3, "only %d sites failed: the sweep is not armed" % (n - 1)
            assert outcomes.get("reload failed") and outcomes.get("closed"), outcomes
            return
        assert after == before + 1 and log.count("fault injected: ") == 1, (n, before, after, log)
        before = after
        if os.environ.get("SWEEP_DEBUG"):
            print("RELOAD", n, outcome, re.findall(r"fault injected: (\S+)", log), SERVER_LINE.sub("", log).replace("\n", " | ")[:400])
        if "reload failed" in log:
            outcome = "reload failed"
        elif outcome == "whole":
            continue
        lines = [line for line in log.splitlines() if SERVER_LINE.match(line) and "[ERROR]" in line]
        assert len(lines) == 1 and outcome in ("closed", "500", "reload failed"), (n, outcome, log)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    raise AssertionError("still failing after 60 sites")
