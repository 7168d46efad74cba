"""HTTP/2: h2c by prior knowledge and h2 over TLS (ALPN), for WSGI and ASGI.

Independent clients: python-hyper's `h2` state machine driven over a plain
socket by the test (raw frames, so the server's exact error codes are seen),
httpx with its http2 extra over TLS, and curl --http2-prior-knowledge. The
conformance cases (RFC 9113, RFC 7541) assert the exact GOAWAY or RST_STREAM
error code the server sends.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from conftest import Conn, fetch, scaled

h2 = pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
from h2.connection import ConnectionState  # noqa: E402

APPS = {"wsgi": "h2app:app", "asgi": "h2app:asgi"}
MB = 1 << 20

# RFC 9113 section 7.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 6, 7, 8, 9


def pattern(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


class H2:
    """A raw HTTP/2 client: the h2 state machine over a socket."""

    def __init__(self, addr, validate=True, sock=None, preface=True):
        self.sock = sock or socket.create_connection(addr, timeout=scaled(10))
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate,
                                        validate_inbound_headers=True)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.addr = addr
        self.responses = {}   # stream id -> {"headers":, "data":, "ended":, "reset":}
        self.goaway = None    # (error code, last stream id)
        self.closed = False
        self.inbuf = b""
        self.ack = True        # give back the windows of what arrives
        self.shut = set()      # ... but never these streams' own windows
        if preface:
            self.conn.initiate_connection()
            self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data):
        self.sock.sendall(data)

    def request(self, path, method="GET", body=None, headers=(), end=True, flush=True):
        """Opens a stream; flush=False: its frames wait for the next flush."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"),
                (":authority", "127.0.0.1:%d" % self.addr[1]), *headers]
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        self.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None,
                               "trailers": None}
        if body is not None:
            self.send_body(sid, body, end=end)
        if flush:
            self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        """Sends as much as the windows allow, reading events while waiting."""
        view = memoryview(body)
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.flush()
                self.pump()
                continue
            chunk, view = view[:room], view[room:]
            self.conn.send_data(sid, bytes(chunk))
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self):
        """Reads one socket read's worth of events; False once closed."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            self.closed = True
            return False
        self.inbuf += data
        # Frame by frame: h2 takes a GOAWAY as the end of everything, but
        # the streams it lets finish (RFC 9113 6.8) still send frames.
        while len(self.inbuf) >= 9 and len(self.inbuf) >= 9 + int.from_bytes(self.inbuf[:3], "big"):
            n = 9 + int.from_bytes(self.inbuf[:3], "big")
            one, self.inbuf = self.inbuf[:n], self.inbuf[n:]
            try:
                events = self.conn.receive_data(one)
            except h2.exceptions.ProtocolError:
                events = []
            self.handle(events)
        self.flush()
        return True

    def handle(self, events):
        for ev in events:
            r = self.responses.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                r["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                r["data"] += ev.data
                n = ev.flow_controlled_length
                if n and self.ack and self.conn.state_machine.state != ConnectionState.CLOSED:
                    if ev.stream_id in self.shut:
                        self.conn.increment_flow_control_window(n)  # the connection's only
                    else:
                        self.conn.acknowledge_received_data(n, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                r["trailers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                r["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if r is not None:
                    r["reset"] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
                if ev.error_code == NO_ERROR:
                    self.conn.state_machine.state = ConnectionState.CLIENT_OPEN

    def wait(self, pred, timeout=20, closed_ok=False):
        """Until pred(); fails on timeout, and when the connection closes
        first unless closed_ok (then returns False)."""
        deadline = time.monotonic() + scaled(timeout)
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("timed out; responses %r goaway %r" % (
                    {k: (v["headers"], len(v["data"]), v["ended"], v["reset"]) for k, v in self.responses.items()},
                    self.goaway))
            if not self.pump():
                break
        if not pred():
            if closed_ok:
                return False
            raise AssertionError("the connection closed first; responses %r goaway %r" % (
                {k: (v["headers"], len(v["data"]), v["ended"], v["reset"]) for k, v in self.responses.items()},
                self.goaway))
        return True

    def get(self, path, **kw):
        sid = self.request(path, **kw)
        self.wait(lambda: self.responses[sid]["ended"] or self.responses[sid]["reset"] is not None)
        return self.responses[sid]

    def wait_goaway(self, timeout=10):
        self.wait(lambda: self.goaway is not None or self.closed, timeout)
        return self.goaway

    def close(self):
        self.sock.close()


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


# ---- basics --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_get_post_and_protocol(server, kind):
    srv = server(APPS[kind])
    c = H2(srv.addr)
    r = c.get("/proto")
    assert r["headers"][":status"] == "200"
    assert bytes(r["data"]) == (b"HTTP/2" if kind == "wsgi" else b"2")
    r = c.get("/echo", method="POST", body=b"hello there")
    assert bytes(r["data"]) == b"hello there" and r["headers"]["x-length"] == "11"
    # Connection-specific fields of the app's response are not sent (RFC 9113 8.2.2).
    r = c.get("/")
    assert "connection" not in r["headers"] and bytes(r["data"]) == b"hello h2"
    c.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_one_megabyte_each_way(server, kind):
    srv = server(APPS[kind])
    c = H2(srv.addr)
    body = pattern(MB)
    r = c.get("/echo", method="POST", body=body, headers=[("content-length", str(MB))])
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == body
    r = c.get("/big?n=%d" % MB)
    assert bytes(r["data"]) == body
    c.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_hundred_concurrent_streams(server, kind):
    srv = server(APPS[kind])
    c = H2(srv.addr)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    sids = [c.request("/big?n=20000") for _ in range(100)]
    c.wait(lambda: all(c.responses[s]["ended"] for s in sids), timeout=60)
    assert all(bytes(c.responses[s]["data"]) == pattern(20000) for s in sids)
    # The 101st at once is refused by the client's own view of the limit;
    # the server advertised it, and all 100 were answered on one connection.
    c.close()


def test_slow_reader_is_not_buffered_without_bound(server):
    """A client that never opens its window gets 64 KiB and no more: the
    rest waits in the application, not in the server."""
    srv = server(APPS["wsgi"])
    c = H2(srv.addr)
    sid = c.request("/big?n=%d" % (8 * MB))
    # Read without acknowledging: the window stays shut.
    got = 0
    deadline = time.monotonic() + scaled(3)
    c.sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            data = c.sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for ev in c.conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                got += len(ev.data)
    assert 0 < got <= 65535
    c.close()
    # The server serves others meanwhile.
    c2 = H2(srv.addr)
    assert c2.get("/")["headers"][":status"] == "200"
    c2.close()
    del sid


# ---- cancellation and stopping ------------------------------------------

@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_rst_stream_mid_upload(server, kind):
    srv = server(APPS[kind])
    c = H2(srv.addr)
    sid = c.request("/echo", method="POST", body=pattern(30000), end=False)
    c.conn.reset_stream(sid, error_code=CANCEL)
    c.flush()
    # The connection goes on; the next stream is answered.
    r = c.get("/proto")
    assert r["headers"][":status"] == "200"
    c.close()


def test_rst_stream_is_asgi_disconnect(server):
    srv = server(APPS["asgi"])
    c = H2(srv.addr)
    sid = c.request("/disconnect", method="POST", body=b"x", end=False)
    time.sleep(scaled(0.3))
    c.conn.reset_stream(sid, error_code=CANCEL)
    c.flush()
    assert c.get("/")["headers"][":status"] == "200"
    deadline = time.monotonic() + scaled(10)
    while "disconnect heard" not in srv.stdout_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "disconnect heard" in srv.stdout_text()
    c.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_goaway_on_sigterm_finishes_streams(server, kind):
    srv = server(APPS[kind], workers=1)
    c = H2(srv.addr)
    c.get("/")
    sids = [c.request("/slow?s=0.5") for _ in range(3 if kind == "wsgi" else 10)]
    time.sleep(scaled(0.2))
    srv.send_signal(signal.SIGTERM)
    c.wait(lambda: all(c.responses[s]["ended"] for s in sids), timeout=30)
    got = [(c.responses[s]["headers"], bytes(c.responses[s]["data"])) for s in sids]
    assert all(d == b"slow done" for _h, d in got), (got, srv.describe())
    assert c.wait_goaway() is not None and c.goaway[0] == NO_ERROR
    assert c.goaway[1] >= max(sids)
    assert srv.wait_exit(20) == 0


# ---- deadlines: --timeout and --io-timeout end one stream ----------------

def wait_log(srv, text, timeout=15, out=False):
    deadline = time.monotonic() + scaled(timeout)
    while text not in (srv.stdout_text() if out else srv.stderr_text()):
        assert time.monotonic() < deadline, "no %r in the log\n%s" % (text, srv.describe())
        time.sleep(0.05)


def wait_stdout(srv, text):
    """What the application printed."""
    wait_log(srv, text, timeout=20, out=True)


@pytest.mark.parametrize("kind,target", [("wsgi", "/spin?s=10"), ("asgi", "/spin?s=10"), ("asgi", "/wait?s=10")])
def test_timeout_answers_the_stream_504(server, kind, target):
    """--timeout on a stream whose response has not begun: that stream is
    answered 504 (HEADERS, then END_STREAM), the connection goes on."""
    srv = server("hangs:" + ("app" if kind == "wsgi" else "asgi"), "--timeout", "2", workers=1)
    c = H2(srv.addr)
    sid = c.request(target)
    c.wait(lambda: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None, timeout=20)
    r = c.responses[sid]
    assert r["headers"][":status"] == "504" and bytes(r["data"]) == b"Gateway Timeout\n", r
    assert r["reset"] is None and c.goaway is None
    assert c.get("/")["headers"][":status"] == "200"
    wait_log(srv, "GET %s ran past --timeout (2s)" % target)
    c.close()


def test_timeout_after_the_response_began_resets_the_stream(server):
    """The application began its response (start_response and a first
    chunk), then ran past --timeout: the stream is reset (INTERNAL_ERROR),
    not the connection."""
    srv = server("hangs:app", "--timeout", "2", workers=1)
    c = H2(srv.addr)
    sid = c.request("/stream?s=10")
    c.wait(lambda: c.responses[sid]["reset"] is not None, timeout=20)
    r = c.responses[sid]
    assert r["reset"] == INTERNAL_ERROR and not r["ended"] and c.goaway is None
    assert b"ended" not in r["data"]
    assert c.get("/")["headers"][":status"] == "200"
    wait_log(srv, "GET /stream?s=10 ran past --timeout (2s) on an HTTP/2 stream: cancelled")
    c.close()


def test_asgi_timeout_spares_the_other_streams(server):
    srv = server("hangs:asgi", "--timeout", "2", workers=1)
    c = H2(srv.addr)
    slow = c.request("/wait?s=10")
    quick = [c.request("/wait?s=0.2") for _ in range(3)]
    c.wait(lambda: all(c.responses[s]["ended"] for s in quick))
    assert not c.responses[slow]["ended"]
    c.wait(lambda: c.responses[slow]["ended"], timeout=20)
    assert c.responses[slow]["headers"][":status"] == "504"
    wait_log(srv, "GET /wait?s=10 ran past --timeout (2s): answered 504")


# ---- streams of one connection spread over the workers -------------------

def at_once(c, paths, bodies=None):
    """Opens one stream per path in a single write, so that the server reads
    them together (a WSGI application called first would otherwise hold its
    loop before the rest were read). With bodies: POSTs whose bodies begin
    with those bytes and go on."""
    sids = []
    for i, path in enumerate(paths):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST" if bodies else "GET"), (":path", path), (":scheme", "http"),
                                  (":authority", "127.0.0.1:%d" % c.addr[1])], end_stream=not bodies)
        if bodies:
            c.conn.send_data(sid, bodies[i])
        c.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None,
                            "trailers": None}
        sids.append(sid)
    c.flush()
    return sids


def ready_client(srv):
    c = H2(srv.addr)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    return c


@pytest.mark.tsan
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_hundred_streams_of_one_connection_run_in_several_interpreters(server, kind):
    """Each request holds its interpreter until another one has started
    (tests/apps/_wsgicheck.py meet): with one interpreter serving the whole
    connection, none would meet."""
    srv = server(APPS[kind], "--mode", "interpreters")
    c = ready_client(srv)
    streams_meet_in_several_interpreters(c, 100)
    c.close()


def streams_meet_in_several_interpreters(c, n):
    """n streams opened at once, each waiting for another to start: every
    one met, and more than one interpreter answered."""
    meet = "/meet?key=%s&n=2&timeout=%d" % (uuid.uuid4().hex, int(scaled(60)))
    sids = at_once(c, [meet] * n)
    c.wait(lambda: all(c.responses[s]["ended"] for s in sids), timeout=120)
    answers = [bytes(c.responses[s]["data"]).decode().split() for s in sids]
    assert all(a[1] == "met" for a in answers), answers
    assert len({a[0] for a in answers}) > 1, answers


def test_rst_stream_of_a_remote_stream_is_asgi_disconnect(server):
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    hold = c.request("/hold?s=%g" % scaled(3))
    # Answered by the sibling (this loop runs /hold): its interpreter, and
    # /hold is surely under way once it is back.
    other = bytes(c.get("/who")["data"]).decode()
    sid = c.request("/disconnect")
    wait_stdout(srv, "disconnect awaited in %s" % other)
    c.conn.reset_stream(sid, error_code=CANCEL)
    c.flush()
    wait_stdout(srv, "disconnect heard in %s" % other)
    c.wait(lambda: c.responses[hold]["ended"], timeout=30)
    assert bytes(c.responses[hold]["data"]).decode() != other
    assert c.get("/")["headers"][":status"] == "200"
    c.close()

# ---- a streamed (ASGI) request body answered by a sibling -----------------

def upload_answer(r):
    """/upload's last line: (interpreter, length, sha256)."""
    who, n, digest = bytes(r["data"]).decode().split("\n")[-1].split()
    return who, int(n), digest


def first_line(c, sid):
    c.wait(lambda: b"\n" in c.responses[sid]["data"] or c.responses[sid]["reset"] is not None, timeout=60)
    return bytes(c.responses[sid]["data"]).decode().split("\n")[0]


def open_upload(c, path, head=b""):
    """A POST whose body has begun and goes on: (stream id, the body so far)."""
    return c.request(path, method="POST", body=head, end=False), head


def local_and_remote(c, second, head=b""):
    """Stream 1 (/upload?first=1, its body open) runs on the connection's
    loop, which is then busy with it: the next stream goes to the sibling.
    Returns (stream 1, its interpreter, the second stream)."""
    local, _ = open_upload(c, "/upload?first=1", b"a")
    who = first_line(c, local)
    remote, _ = open_upload(c, second, head)
    return local, who, remote


def finish_upload(c, sid, sent, rest):
    c.send_body(sid, rest, end=True)
    c.wait(lambda: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None, timeout=60)
    r = c.responses[sid]
    assert r["headers"][":status"] == "200" and r["reset"] is None, r
    who, n, digest = upload_answer(r)
    assert n == len(sent + rest) and digest == hashlib.sha256(sent + rest).hexdigest()
    return who


@pytest.mark.tsan
def test_uploads_of_one_connection_run_in_several_interpreters(server):
    """Uploads whose bodies are still coming start where there is room: each
    meets another request (tests/apps/_wsgicheck.py meet) and says so before
    it reads its body, and the client sends the rest of the bodies only once
    every stream has said it: they all started with their body incomplete,
    in more than one interpreter, and each reads its body whole."""
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    meet = "/upload?meet=%s&n=2&timeout=%d" % (uuid.uuid4().hex, int(scaled(60)))
    heads = [os.urandom(1000) for _ in range(8)]
    sids = at_once(c, [meet] * len(heads), bodies=heads)
    lines = [first_line(c, s).split() for s in sids]
    assert all(x[1:] == ["met"] for x in lines), lines
    assert len({x[0] for x in lines}) > 1, lines
    assert not any(c.responses[s]["ended"] for s in sids)
    for sid, head, line in zip(sids, heads, lines):
        assert finish_upload(c, sid, head, os.urandom(200000)) == line[0]
    assert c.goaway is None
    c.close()


@pytest.mark.tsan
def test_a_megabyte_upload_to_a_remote_stream_arrives_whole(server):
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    local, here, remote = local_and_remote(c, "/upload?first=1")
    there = first_line(c, remote)
    assert there != here
    body = os.urandom(MB)
    assert finish_upload(c, remote, b"", body) == there
    assert finish_upload(c, local, b"a", b"bc") == here
    c.close()


def test_a_remote_stream_that_does_not_read_holds_its_client_to_a_window(server):
    """The application on the sibling reads none of its body for now: the
    client can send one stream window (64 KiB) and no more, because the
    owner gives the window back only for what it hands over, which it does
    only when the runner's application asks. Once it reads, all of it
    arrives."""
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    key = uuid.uuid4().hex
    local, here, remote = local_and_remote(c, "/upload?first=1&wait=" + key)
    assert first_line(c, remote) != here
    sent = b""
    while True:
        room = min(c.conn.local_flow_control_window(remote), c.conn.max_outbound_frame_size)
        if room == 0:
            c.get("/")  # a round trip: what the server sent before its answer is in
            if c.conn.local_flow_control_window(remote) == 0:
                break
            continue
        chunk = os.urandom(room)
        c.conn.send_data(remote, chunk)
        c.flush()
        sent += chunk
        assert len(sent) <= 4 * 65535, len(sent)
    assert 60000 < len(sent) <= 65535, len(sent)  # the windows, less what stream 1 sent
    with urllib.request.urlopen("http://127.0.0.1:%d/release?key=%s" % (srv.port, key), timeout=scaled(10)) as r:
        assert r.read() == b"released"
    assert finish_upload(c, remote, sent, os.urandom(300000)) != here
    assert finish_upload(c, local, b"a", b"b") == here
    c.close()


def test_rst_stream_mid_upload_of_a_remote_stream(server):
    """RST_STREAM while a sibling reads the stream's body: its application
    hears http.disconnect there; the connection goes on."""
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    local, here, remote = local_and_remote(c, "/disconnect", b"x" * 30000)
    wait_stdout(srv, "disconnect awaited in")
    there = srv.stdout_text().split("disconnect awaited in ")[1].split()[0]
    assert there != here, srv.stdout_text()
    c.send_body(remote, b"y" * 30000, end=False)
    c.conn.reset_stream(remote, error_code=CANCEL)
    c.flush()
    wait_stdout(srv, "disconnect heard in %s" % there)
    assert finish_upload(c, local, b"a", b"b" * 100000) == here
    assert c.get("/")["headers"][":status"] == "200" and c.goaway is None
    c.close()


def test_goaway_on_sigterm_finishes_remote_uploads(server):
    """SIGTERM while two uploads are under way, one on the connection's loop
    and one on the sibling: GOAWAY, both bodies still arrive whole and are
    answered, then the server leaves."""
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    local, here, remote = local_and_remote(c, "/upload?first=1", b"r")
    assert first_line(c, remote) != here
    srv.send_signal(signal.SIGTERM)
    c.wait_goaway()
    assert c.goaway is not None and c.goaway[0] == NO_ERROR and c.goaway[1] >= remote
    finish_upload(c, remote, b"r", os.urandom(300000))
    finish_upload(c, local, b"a", os.urandom(300000))
    assert srv.wait_exit(20) == 0


def test_asgi_response_trailers_of_a_remote_stream(server):
    """http.response.trailers from an application that a sibling runs: the
    owner sends them as the stream's last HEADERS frame."""
    srv = server(APPS["asgi"], "--mode", "interpreters")
    c = ready_client(srv)
    local, here, remote = local_and_remote(c, "/trailers")
    c.conn.end_stream(remote)
    c.flush()
    c.wait(lambda: c.responses[remote]["ended"] or c.responses[remote]["reset"] is not None)
    r = c.responses[remote]
    assert r["reset"] is None and bytes(r["data"]) == b"with trailers", r
    assert r["trailers"] == {"x-checksum": "abc", "x-count": "2"}
    assert finish_upload(c, local, b"a", b"b") == here
    c.close()


# ---- --timeout on a stream answered by a sibling ---------------------------

def worker_of(answer):
    """The worker id in a tests/apps/hangs.py answer ("<worker> <interp> <pid>")."""
    return bytes(answer["data"]).decode().split()[0]


@pytest.mark.parametrize("kind,target,began", [
    ("wsgi", "/spin?s=30", False), ("wsgi", "/stream?s=30", True),
    ("asgi", "/spin?s=30", False), ("asgi", "/wait?s=30", False), ("asgi", "/stream?s=30", True),
    ("wsgi", "/sleep?s=30", False)])
def test_timeout_of_a_remote_stream(server, kind, target, began):
    """Two streams read together: the newer stays on the connection's loop,
    the older (target) goes to the sibling, runs past --timeout there and is
    answered 504, or reset (INTERNAL_ERROR) when its response had begun; the
    connection and its other streams go on meanwhile, and the log has one
    line for it, naming the sibling's worker. A call stuck in C (time.sleep)
    is answered by the owner once the watchdog gives up on it, before the
    call is back."""
    srv = server("hangs:" + ("app" if kind == "wsgi" else "asgi"), "--mode", "interpreters",
                 "--timeout", "2")
    c = ready_client(srv)
    slow, quick = at_once(c, [target, "/"])
    c.wait(lambda: c.responses[quick]["ended"])
    owner = worker_of(c.responses[quick])
    # The owner is free while the sibling runs the slow stream.
    assert c.get("/")["headers"][":status"] == "200"
    c.wait(lambda: c.responses[slow]["ended"] or c.responses[slow]["reset"] is not None, timeout=40)
    r = c.responses[slow]
    if began:
        assert r["reset"] == INTERNAL_ERROR and not r["ended"], r
        assert bytes(r["data"]) in (b"", b"began "), r
    else:
        assert r["reset"] is None and r["headers"] and r["headers"][":status"] == "504", r
        assert bytes(r["data"]) == b"Gateway Timeout\n"
    if "sleep" in target:
        assert "back from the request" not in srv.stderr_text()
    assert c.goaway is None
    # Nothing runs now: a new stream stays on the owner's loop.
    assert worker_of(c.get("/")) == owner
    line = "GET %s ran past --timeout (2s)" % target
    wait_log(srv, line)
    lines = [x for x in srv.stderr_text().splitlines() if "ran past --timeout" in x]
    assert len(lines) == 1 and line in lines[0], lines
    ran = re.search(r"\] worker (\d+): GET ", lines[0])
    assert ran and ran.group(1) != owner, (lines, owner)
    c.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_io_timeout_resets_a_stream_whose_window_stays_shut(server, kind):
    """The client reads stream 1's DATA but never opens stream 1's window
    (it does open the connection's): after --io-timeout stream 1 alone is
    reset (CANCEL); other streams are served before and after."""
    srv = server(APPS[kind], "--io-timeout", "1", workers=1)
    c = H2(srv.addr)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    stuck = c.conn.get_next_available_stream_id()
    c.shut.add(stuck)
    assert c.request("/big?n=%d" % (4 * MB)) == stuck
    t0 = time.monotonic()
    c.wait(lambda: len(c.responses[stuck]["data"]) == 65535)
    assert c.get("/")["headers"][":status"] == "200"  # while stream 1 waits
    c.wait(lambda: c.responses[stuck]["reset"] is not None, timeout=20)
    assert c.responses[stuck]["reset"] == CANCEL and len(c.responses[stuck]["data"]) == 65535
    assert time.monotonic() - t0 >= 0.9
    assert c.goaway is None
    r = c.get("/big?n=100000")
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == pattern(100000)
    wait_log(srv, "HTTP/2 stream %d from 127.0.0.1: window shut for --io-timeout (1s): reset" % stuck)
    c.close()


def test_io_timeout_ends_a_connection_whose_window_stays_shut(server):
    srv = server(APPS["wsgi"], "--io-timeout", "1", workers=1)
    c = H2(srv.addr)
    c.ack = False
    sid = c.request("/big?n=%d" % (4 * MB))
    assert c.wait_goaway(timeout=20) == (NO_ERROR, sid)
    assert len(c.responses[sid]["data"]) == 65535
    wait_log(srv, "HTTP/2 from 127.0.0.1: connection window shut for --io-timeout (1s): closed")
    c.close()


# ---- WSGI write() waits for the stream's window ---------------------------

def test_wsgi_write_waits_for_the_window(server, tmp_path):
    """write() of 1 MB in 64 KiB calls while the client keeps the stream's
    window shut: write() blocks once the queue is past the high-water mark
    (the application does not run ahead), and goes on as the window opens."""
    marker = tmp_path / "marker"
    srv = server("writer:app", "--write-high-water", "65536", workers=1)
    c = H2(srv.addr)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    sid = c.conn.get_next_available_stream_id()
    c.shut.add(sid)
    c.request("/?mode=big&n=16&marker=%s" % marker)
    c.wait(lambda: len(c.responses[sid]["data"]) == 65535)
    lines = marker.read_text().split()
    assert "done" not in lines, lines
    assert lines.count("wrote") <= 4, lines   # the window, the high-water mark, one call
    c.shut.discard(sid)
    c.conn.increment_flow_control_window(2 * MB, stream_id=sid)
    c.flush()
    c.wait(lambda: c.responses[sid]["ended"], timeout=30)
    assert len(c.responses[sid]["data"]) == MB and bytes(c.responses[sid]["data"]) == b"w" * MB, len(c.responses[sid]["data"])
    assert marker.read_text().split()[-1] == "done"
    c.close()


def test_wsgi_write_with_the_window_shut_times_out(server, tmp_path):
    marker = tmp_path / "marker"
    srv = server("writer:app", "--io-timeout", "1", "--write-high-water", "65536", workers=1)
    c = H2(srv.addr)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    sid = c.conn.get_next_available_stream_id()
    c.shut.add(sid)
    c.request("/?mode=big&n=16&marker=%s" % marker)
    c.wait(lambda: c.responses[sid]["reset"] is not None, timeout=20)
    assert c.responses[sid]["reset"] == INTERNAL_ERROR and len(c.responses[sid]["data"]) == 65535
    assert "error" in marker.read_text()
    # The connection goes on.
    r = c.get("/?mode=write_only")
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == b"one,two,"
    c.close()


# ---- trailers ------------------------------------------------------------

def test_asgi_response_trailers(server):
    """http.response.trailers: the body's DATA, then a HEADERS frame with the
    trailer fields (lower-cased, connection-specific ones dropped) and
    END_STREAM."""
    srv = server(APPS["asgi"])
    c = H2(srv.addr)
    r = c.get("/trailers")
    assert r["headers"][":status"] == "200" and bytes(r["data"]) == b"with trailers"
    assert r["trailers"] == {"x-checksum": "abc", "x-count": "2"} and r["ended"]
    c.close()
    # Over HTTP/1.0 the scope does not offer them (no chunks to end with them).
    out = fetch(srv.addr, "/trailers", version="HTTP/1.0")
    assert out.status == 200 and out.body == b"no trailers"


def test_asgi_response_trailers_over_http11(server):
    """Over HTTP/1.1 the response is chunked and its trailer section holds
    the fields (RFC 9112 7.1.2), connection-specific ones dropped; the
    connection carries the next request."""
    srv = server(APPS["asgi"])
    with Conn(srv.addr) as conn:
        r = conn.request("GET", "/trailers", headers=[("TE", "trailers")])
        assert r.status == 200 and r.chunked and r.body == b"with trailers", r.raw_head
        assert r.trailers == [b"X-Checksum: abc", b"x-count: 2"], r.trailers
        assert r.header("Content-Length") is None
        r = conn.request("GET", "/proto")
        assert r.status == 200 and r.body == b"1.1"


def test_asgi_response_trailers_dropped_with_a_content_length(server):
    """An application that gives its own Content-Length and asks for
    trailers: the body goes as it said, the trailers are dropped (there is
    no chunked framing to carry them), with a line at debug level."""
    srv = server(APPS["asgi"], "--log-level", "debug")
    with Conn(srv.addr) as conn:
        r = conn.request("GET", "/trailers?length=1")
        assert r.status == 200 and not r.chunked and r.body == b"with trailers", r.raw_head
        assert r.header("Content-Length") == "13" and r.trailers == []
        assert conn.request("GET", "/proto").body == b"1.1"
    wait_log(srv, "GET /trailers?length=1: response trailers dropped (the response is not chunked)")


def test_asgi_response_trailers_frames(server):
    """The exact frames: HEADERS (no END_STREAM), DATA (no END_STREAM),
    HEADERS (END_HEADERS | END_STREAM)."""
    srv = server(APPS["asgi"])
    c = raw_client(srv.addr)
    sid = c.request("/trailers")
    frames, buf = [], c.inbuf
    c.sock.settimeout(scaled(10))
    while not any(t == 0x1 and f & 0x1 for t, f, _s in frames):
        data = c.sock.recv(65536)
        assert data, frames
        buf += data
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = 9 + int.from_bytes(buf[:3], "big")
            if int.from_bytes(buf[5:9], "big") == sid:
                frames.append((buf[3], buf[4], n - 9))
            buf = buf[n:]
    kinds = [(t, f & 0x5) for t, f, n in frames if not (t == 0x0 and n == 0)]
    assert kinds[0] == (0x1, 0x4) and kinds[-1] == (0x1, 0x5), frames
    assert all(k == (0x0, 0x0) for k in kinds[1:-1]), frames
    c.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_request_trailers_are_accepted(server, kind):
    """A request body followed by a HEADERS frame of trailers with
    END_STREAM (RFC 9113 8.1) is a complete request, not an error."""
    srv = server(APPS[kind])
    c = H2(srv.addr)
    sid = c.request("/echo", method="POST", body=b"body before trailers", end=False)
    c.conn.send_headers(sid, [("x-digest", "123")], end_stream=True)
    c.flush()
    c.wait(lambda: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None)
    r = c.responses[sid]
    assert r["reset"] is None and r["headers"][":status"] == "200"
    assert bytes(r["data"]) == b"body before trailers" and c.goaway is None


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_goaway_on_sigterm_finishes_remote_streams(server, kind):
    srv = server(APPS[kind], "--mode", "interpreters")
    c = ready_client(srv)
    sids = at_once(c, ["/hold?s=%g" % scaled(0.5)] * 6)
    time.sleep(scaled(0.2))
    srv.send_signal(signal.SIGTERM)
    c.wait(lambda: all(c.responses[s]["ended"] for s in sids), timeout=30)
    who = [bytes(c.responses[s]["data"]).decode() for s in sids]
    assert all(w.isdigit() for w in who) and len(set(who)) > 1, (who, srv.describe())
    assert c.wait_goaway() is not None and c.goaway[0] == NO_ERROR
    assert srv.wait_exit(20) == 0


def produced(srv, key):
    url = "http://127.0.0.1:%d/count?key=%s" % (srv.port, key)
    with urllib.request.urlopen(url, timeout=scaled(10)) as r:
        return int(r.read())


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_remote_streams_to_a_slow_reader_are_bounded(server, kind):
    """Large responses on streams of one connection, two of them answered by
    the sibling, to a client that reads nothing (its windows stay shut):
    what the applications produce stops at a few high-water marks per
    stream, counted as they produce it, and all of it arrives once the
    client reads."""
    hw, n, size = 65536, 4, 2 * MB
    srv = server(APPS[kind], "--mode", "interpreters", "--write-high-water", str(hw))
    c = ready_client(srv)
    key = uuid.uuid4().hex
    sids = at_once(c, ["/counted?n=%d&key=%s" % (size, key)] * n)
    # Until the count stops moving (a server that does not stop would
    # produce everything: n * size).
    last, still = -1, 0
    while still < 5 and last < n * size:
        now = produced(srv, key)
        still = still + 1 if now == last else 0
        last = now
        time.sleep(0.1)
    # Per stream: the runner's queue (a mark and a piece), the job between
    # the loops (a mark), the stream's queue (two marks); per connection:
    # its queue and the client's window.
    bound = n * (4 * hw + 16384) + hw + 65535
    assert 0 < last <= bound, (last, bound)
    c.wait(lambda: all(c.responses[s]["ended"] for s in sids), timeout=60)
    assert all(bytes(c.responses[s]["data"]) == pattern(size) for s in sids)
    assert len({c.responses[s]["headers"]["x-who"] for s in sids}) > 1
    c.close()


# ---- TLS (ALPN), httpx, curl ---------------------------------------------

def make_certs(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
                    "-subj", "/CN=localhost", "-days", "2",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (scripts/bootstrap installs it)")
    return make_certs(tmp_path_factory.mktemp("h2tls"))


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_httpx_http2_over_tls(server, certs, kind):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("h2")
    cert, key = certs
    srv = server(APPS[kind], "--certfile", cert, "--keyfile", key)
    ctx = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(http2=True, verify=ctx) as cl:
        r = cl.get("https://localhost:%d/proto" % srv.port)
        assert r.http_version == "HTTP/2" and r.text == ("HTTP/2" if kind == "wsgi" else "2")
        body = pattern(MB)
        r = cl.post("https://localhost:%d/echo" % srv.port, content=body)
        assert r.http_version == "HTTP/2" and r.content == body
    # HTTP/1.1 clients are served on the same port.
    with httpx.Client(http2=False, verify=ctx) as cl:
        r = cl.get("https://localhost:%d/proto" % srv.port)
        assert r.http_version == "HTTP/1.1" and r.text in ("HTTP/1.1", "1.1")


def test_http_1_offers_no_h2(server, certs):
    httpx = pytest.importorskip("httpx")
    cert, key = certs
    srv = server(APPS["wsgi"], "--certfile", cert, "--keyfile", key, "--http", "1")
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(srv.addr) as s, ctx.wrap_socket(s, server_hostname="localhost") as t:
        assert t.selected_alpn_protocol() == "http/1.1"
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(cert))) as cl:
        assert cl.get("https://localhost:%d/proto" % srv.port).http_version == "HTTP/1.1"
    # And the h2c preface is not HTTP/1.1: an error, no HTTP/2.
    with socket.create_connection(srv.addr) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        pass


def test_http_2_only(server, certs):
    cert, key = certs
    srv = server(APPS["wsgi"], "--http", "2")
    # An HTTP/1.1 request is not the preface: GOAWAY PROTOCOL_ERROR.
    c = H2(srv.addr, preface=False)
    c.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.wait_goaway() == (PROTOCOL_ERROR, 0)
    c.close()
    c = H2(srv.addr)
    assert c.get("/proto")["data"] == b"HTTP/2"
    c.close()
    tls = server(APPS["wsgi"], "--http", "2", "--certfile", cert, "--keyfile", key)
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(tls.addr) as s:
        try:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                got = t.selected_alpn_protocol()
        except ssl.SSLError:
            got = "refused"
    assert got in (None, "refused")


def curl_run(args):
    # Not under the sanitizer tiers' LD_PRELOAD, which is the server's.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(args, capture_output=True, text=True, timeout=scaled(20), env=env)


def test_curl_prior_knowledge(server):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("needs curl (scripts/bootstrap installs it)")
    if "HTTP2" not in curl_run([curl, "--version"]).stdout:
        pytest.skip("this curl has no HTTP/2 (no nghttp2)")
    srv = server(APPS["wsgi"])
    out = curl_run([curl, "-s", "--http2-prior-knowledge", "-w", "\n%{http_version}",
                    "http://127.0.0.1:%d/proto" % srv.port])
    assert out.stdout == "HTTP/2\n2"
    # HTTP/1.1 on the same port.
    out = curl_run([curl, "-s", "http://127.0.0.1:%d/proto" % srv.port])
    assert out.stdout == "HTTP/1.1"
    # Upgrade: h2c (curl --http2 on an http:// URL): 101, then HTTP/2.
    out = curl_run([curl, "-s", "--http2", "-w", "\n%{http_version}",
                    "http://127.0.0.1:%d/proto" % srv.port])
    assert out.stdout == "HTTP/2\n2"
    # With a body the upgrade is declined: the answer is HTTP/1.1's.
    out = curl_run([curl, "-s", "--http2", "-w", "\n%{http_version}", "-d", "hello",
                    "http://127.0.0.1:%d/echo" % srv.port])
    assert out.stdout == "hello\n1.1"


# ---- Upgrade: h2c (RFC 7540 3.2) ------------------------------------------

def upgrade_request(addr, path="/proto", method="GET", body=b"", settings=None, extra="",
                    connection="Upgrade, HTTP2-Settings"):
    """Sends an HTTP/1.1 request asking for h2c; returns (client, head of
    the answer) with the bytes after the head left in the client's inbuf."""
    c = H2(addr, preface=False)
    ours = c.conn.initiate_upgrade_connection().decode()  # the client now expects stream 1's answer
    if settings is None:
        settings = ours
    req = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: %s\r\n"
           "Upgrade: h2c\r\nHTTP2-Settings: %s\r\n%s" % (method, path, addr[1], connection, settings, extra))
    if body:
        req += "Content-Length: %d\r\n" % len(body)
    c.raw(req.encode() + b"\r\n" + body)
    got = b""
    while b"\r\n\r\n" not in got:
        data = c.sock.recv(65536)
        assert data, got
        got += data
    head, _, rest = got.partition(b"\r\n\r\n")
    c.inbuf = rest
    return c, head.decode()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_upgrade_h2c(server, kind):
    srv = server(APPS[kind])
    c, head = upgrade_request(srv.addr)
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "\r\nupgrade: h2c" in head.lower()
    # The request that asked is stream 1, answered over HTTP/2.
    c.flush()  # the client's preface and SETTINGS
    c.responses[1] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.wait(lambda: c.responses[1]["ended"])
    assert c.responses[1]["headers"][":status"] == "200"
    assert bytes(c.responses[1]["data"]) == (b"HTTP/2" if kind == "wsgi" else b"2")
    # The client's HTTP2-Settings were applied: stream 1 took no more than
    # the window it gave, and the connection goes on with stream 3.
    r = c.get("/echo", method="POST", body=b"after upgrade")
    assert bytes(r["data"]) == b"after upgrade"
    c.close()


def test_upgrade_h2c_settings_applied(server):
    """HTTP2-Settings with INITIAL_WINDOW_SIZE 100: stream 1's DATA stops at
    100 bytes until the client opens the window."""
    srv = server(APPS["wsgi"])
    settings = base64.urlsafe_b64encode(struct.pack(">HI", 4, 100)).rstrip(b"=").decode()
    c2, head = upgrade_request(srv.addr, path="/big?n=1000", settings=settings)
    assert head.startswith("HTTP/1.1 101 ")
    c2.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b""))
    frames = []
    buf = c2.inbuf
    c2.sock.settimeout(scaled(1))
    try:
        while True:
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n = 9 + int.from_bytes(buf[:3], "big")
                frames.append((buf[3], int.from_bytes(buf[5:9], "big") & 0x7fffffff, n - 9))
                buf = buf[n:]
            data = c2.sock.recv(65536)
            if not data:
                break
            buf += data
    except socket.timeout:
        pass
    data_on_1 = sum(n for t, sid, n in frames if t == 0x0 and sid == 1)
    assert (0x1, 1) in [(t, sid) for t, sid, _n in frames]   # HEADERS on stream 1
    assert data_on_1 == 100
    c2.close()


def test_upgrade_h2c_with_body_is_answered_over_http11(server):
    srv = server(APPS["wsgi"])
    c, head = upgrade_request(srv.addr, path="/echo", method="POST", body=b"some body")
    assert head.startswith("HTTP/1.1 200 ") and "x-length: 9" in head.lower()
    c.close()


def test_upgrade_h2c_ignored_with_http_1(server):
    srv = server(APPS["wsgi"], "--http", "1")
    c, head = upgrade_request(srv.addr)
    assert head.startswith("HTTP/1.1 200 ")
    c.close()


def test_upgrade_h2c_with_http_2(server):
    srv = server(APPS["asgi"], "--http", "2")
    c, head = upgrade_request(srv.addr)
    assert head.startswith("HTTP/1.1 101 ")
    c.flush()
    c.responses[1] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.wait(lambda: c.responses[1]["ended"])
    assert bytes(c.responses[1]["data"]) == b"2"
    c.close()


def test_upgrade_h2c_with_body_with_http_2_is_426(server):
    """--http 2 serves no HTTP/1.1, and an upgrade would have to read the
    whole body first: 426 naming h2c, a body that says what to do, one log
    line, the connection closed; the server serves on."""
    srv = server(APPS["wsgi"], "--http", "2")
    c, head = upgrade_request(srv.addr, path="/echo", method="POST", body=b"some body")
    assert head.startswith("HTTP/1.1 426 Upgrade Required\r\n"), head
    assert "\r\nupgrade: h2c" in head.lower() and "connection: upgrade, close" in head.lower()
    length = int(re.search(r"content-length: (\d+)", head.lower()).group(1))
    body = c.inbuf
    while len(body) < length:
        data = c.sock.recv(65536)
        assert data, body
        body += data
    assert b"HTTP/2 only" in body[:length]
    assert c.sock.recv(65536) == b""  # closed after it
    c.close()
    wait_log(srv, "426 Upgrade Required from 127.0.0.1")
    c = H2(srv.addr)
    assert c.get("/proto")["data"] == b"HTTP/2"
    c.close()


@pytest.mark.parametrize("settings", ["!!!!", "AAMAAABkAA"])  # not base64url; not 6-byte entries
def test_upgrade_h2c_bad_settings_is_400(server, settings):
    srv = server(APPS["wsgi"])
    c, head = upgrade_request(srv.addr, settings=settings)
    assert head.startswith("HTTP/1.1 400 ")
    c.close()
    assert "400 Bad Request from 127.0.0.1" in srv.stderr_text()


def settings_b64(*pairs):
    """An HTTP2-Settings value: SETTINGS entries, base64url without padding."""
    return base64.urlsafe_b64encode(b"".join(struct.pack(">HI", k, v) for k, v in pairs)).rstrip(b"=").decode()


def stream_1(c):
    """Stream 1's answer after an upgrade: (status, body)."""
    c.flush()
    c.responses[1] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.wait(lambda: c.responses[1]["ended"])
    return c.responses[1]["headers"][":status"], bytes(c.responses[1]["data"])


@pytest.mark.parametrize("settings,connection", [
    (settings_b64((4, 65535)) + "=", "Upgrade, HTTP2-Settings"),  # padding tolerated at the end
    (settings_b64((4, 65535)), "upgrade ,\t http2-settings\t"),  # any case, spaces around tokens
    ("", "Upgrade, HTTP2-Settings"),                                # no entries at all
], ids=["padded", "spaced-tokens", "empty"])
def test_upgrade_h2c_settings_forms(server, settings, connection):
    srv = server(APPS["wsgi"])
    c, head = upgrade_request(srv.addr, settings=settings, connection=connection)
    assert head.startswith("HTTP/1.1 101 "), head
    assert stream_1(c) == ("200", b"HTTP/2")
    c.close()


def test_upgrade_h2c_of_a_head_request_has_no_body(server):
    srv = server(APPS["wsgi"])
    c, head = upgrade_request(srv.addr, method="HEAD", path="/big?n=1000")
    assert head.startswith("HTTP/1.1 101 "), head
    assert stream_1(c) == ("200", b"")
    c.close()


@pytest.mark.parametrize("settings", [
    "AAQA=ABk",                                 # padding inside the value
    settings_b64(*[(4, 65535)] * 43),           # 258 bytes of entries: more than any client sends
], ids=["inner-padding", "too-long"])
def test_upgrade_h2c_refused_settings_are_400(server, settings):
    srv = server(APPS["wsgi"])
    c, head = upgrade_request(srv.addr, settings=settings)
    assert head.startswith("HTTP/1.1 400 "), head
    c.close()
    assert "400 Bad Request from 127.0.0.1" in srv.stderr_text()
    assert fetch(srv, "/proto").status == 200  # the server serves on


@pytest.mark.parametrize("settings,code", [
    (settings_b64((2, 2)), PROTOCOL_ERROR),            # ENABLE_PUSH 2
    (settings_b64((4, 1 << 31)), FLOW_CONTROL_ERROR),  # INITIAL_WINDOW_SIZE above 2^31-1
], ids=["enable-push-2", "window-too-large"])
def test_upgrade_h2c_settings_out_of_range_end_the_connection(server, settings, code):
    # RFC 9113 6.5.2: values out of range are a connection error, as in a
    # SETTINGS frame: after the 101, a GOAWAY with that code, and stream 1
    # is never answered.
    # The preface goes with the request, in one write: the server has read
    # all the client sends before it closes (no reset to lose the GOAWAY to).
    srv = server(APPS["wsgi"])
    sock = socket.create_connection(srv.addr, timeout=scaled(10))
    sock.sendall(("GET /proto HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  "Upgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n" % (srv.port, settings)).encode()
                 + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b""))
    with sock, sock.makefile("rb") as f:
        got = f.read()  # to the server's close
    head, _, buf = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), got
    frames = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        frames.append((buf[3], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n]))
        buf = buf[9 + n:]
    goaway = [payload for t, _sid, payload in frames if t == 0x7]
    assert len(goaway) == 1 and int.from_bytes(goaway[0][4:8], "big") == code, frames
    assert not [sid for t, sid, _p in frames if sid == 1], frames


@pytest.mark.parametrize("connection,extra", [
    ("Upgrade", ""),                                                # HTTP2-Settings not named in Connection
    ("Upgrade, HTTP2-Settings", "HTTP2-Settings: AAQAAP__\r\n"),   # two of them
], ids=["not-in-connection", "twice"])
def test_upgrade_h2c_not_taken_is_answered_over_http11(server, connection, extra):
    srv = server(APPS["wsgi"])
    c, head = upgrade_request(srv.addr, connection=connection, extra=extra)
    assert head.startswith("HTTP/1.1 200 "), head
    assert "upgrade: h2c" not in head.lower()
    c.close()


# ---- conformance (RFC 9113, RFC 7541): exact error codes ----------------

@pytest.fixture
def h2srv(server):
    return server(APPS["wsgi"])


def test_connection_specific_header_is_protocol_error(h2srv):
    c = H2(h2srv.addr, validate=False)
    r = c.get("/", headers=[("connection", "keep-alive")])
    assert r["reset"] == PROTOCOL_ERROR and r["headers"] is None
    r = c.get("/", headers=[("transfer-encoding", "chunked")])
    assert r["reset"] == PROTOCOL_ERROR
    r = c.get("/", headers=[("te", "gzip")])
    assert r["reset"] == PROTOCOL_ERROR
    for name in ("keep-alive", "proxy-connection", "upgrade"):
        assert c.get("/", headers=[(name, "x")])["reset"] == PROTOCOL_ERROR, name
    # te: trailers is allowed, and the connection is still good.
    assert c.get("/", headers=[("te", "trailers")])["headers"][":status"] == "200"
    c.close()


@pytest.mark.parametrize("headers", [
    [(":method", "GET"), (":scheme", "http"), (":authority", "x")],                  # no :path
    [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":bogus", "1")],      # unknown pseudo
    [(":method", "GET"), (":path", "/"), (":scheme", "http"), ("Upper", "1")],       # uppercase name
    [(":method", "GET"), ("x", "1"), (":path", "/"), (":scheme", "http")],           # pseudo after regular
    [(":method", "GET"), (":method", "GET"), (":path", "/"), (":scheme", "http")],   # repeated pseudo
])
def test_malformed_request_is_protocol_error(h2srv, headers):
    c = H2(h2srv.addr, validate=False)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, headers, end_stream=True)
    c.flush()
    c.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.wait(lambda: c.responses[sid]["reset"] is not None or c.goaway is not None)
    assert c.responses[sid]["reset"] == PROTOCOL_ERROR
    c.close()


GET = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
POST = [(":method", "POST"), (":path", "/echo"), (":scheme", "http"), (":authority", "x")]


@pytest.mark.parametrize("headers,then", [
    ([(":method", "GET"), (":path", "/"), (":authority", "x")], []),                 # no :scheme
    ([(":path", "/"), (":scheme", "http"), (":authority", "x")], []),               # no :method
    ([(":method", "GET"), (":path", "/"), (":scheme", "http")], []),                 # no :authority, no host
    (GET + [(":status", "200")], []),                                                # response pseudo
    (GET + [(":protocol", "websocket")], []),                                        # CONNECT's, not enabled
    ([(":method", "GET"), (":path", ""), (":scheme", "http"), (":authority", "x")], []),  # empty :path
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", " ")], []),  # blank :authority
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a b")], []),  # bad :authority
    ([(":method", "GET"), (":path", "/"), (":scheme", "ht tp"), (":authority", "x")], []),  # bad :scheme
    ([(":method", "CONNECT"), (":path", "/"), (":authority", "x:1")], []),           # CONNECT with :path
    ([(":method", "CONNECT"), (":scheme", "http"), (":authority", "x:1")], []),      # ... with :scheme
    ([(":method", "CONNECT")], []),                                                  # ... without :authority
    (GET + [("host", "x"), ("host", "y")], []),                                      # two Host fields
    (GET + [("host", "a b")], []),                                                   # bad Host
    (POST + [("content-length", "1"), ("content-length", "1")], [("data", b"x", True)]),  # two lengths
    (POST + [("content-length", "x")], [("data", b"x", True)]),                      # not a number
    (POST + [("content-length", "3")], [("data", b"xy", True)]),                     # body short
    (POST + [("content-length", "3")], [("data", b"xyzw", False)]),                  # body long
    (POST + [("content-length", "3")], []),                                          # no body at all
    (POST, [("data", b"x", False), ("raw headers", [("x-t", "1")], False)]),         # trailers, no END_STREAM
    (POST, [("data", b"x", False), ("headers", [(":path", "/")], True)]),            # pseudo in trailers
    ([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "u@x")], []),  # userinfo
    ([(":method", "GET"), (":path", "http://y/"), (":scheme", "http"), (":authority", "x")], []),  # not origin-form
    ([(":method", "GET"), (":path", "/a b"), (":scheme", "http"), (":authority", "x")], []),  # a space
    ([(":method", "GE T"), (":path", "/"), (":scheme", "http"), (":authority", "x")], []),   # not a token
    (POST, [("data", b"x", False), ("headers", [("connection", "close")], True)]),   # ... in trailers
    (POST, [("data", b"x", False), ("headers", [("X-T", "1")], True)]),              # upper case in trailers
])
def test_malformed_request_with_its_body_is_protocol_error(h2srv, headers, then):
    """Malformed requests (RFC 9113 8.1.1, 8.2, 8.3): the stream is reset
    with PROTOCOL_ERROR, the connection serves on."""
    c = H2(h2srv.addr, validate=False)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, headers, end_stream=not then)
    for kind, what, end in then:
        if kind == "data":
            c.conn.send_data(sid, what, end_stream=end)
        elif kind == "headers":
            c.conn.send_headers(sid, what, end_stream=end)
        else:  # a frame h2 itself refuses to send: END_HEADERS only
            c.flush()
            c.raw(frame(0x1, 0x4 | (0x1 if end else 0), sid, c.conn.encoder.encode(what)))
    c.flush()
    c.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.wait(lambda: c.responses[sid]["reset"] is not None or c.goaway is not None)
    assert c.responses[sid]["reset"] == PROTOCOL_ERROR and c.goaway is None
    wait_log(h2srv, "malformed request from 127.0.0.1 (HTTP/2 stream %d): reset" % sid)
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


def test_malformed_requests_log_one_line_per_connection(h2srv):
    """The first malformed request of a connection is logged at info, the
    next ones at debug: a client cannot fill the log."""
    c = H2(h2srv.addr, validate=False)
    sids = []
    for _ in range(3):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, GET + [(":bogus", "1")], end_stream=True)
        c.responses[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
        sids.append(sid)
    c.flush()
    c.wait(lambda: all(c.responses[sid]["reset"] is not None for sid in sids))
    assert [c.responses[sid]["reset"] for sid in sids] == [PROTOCOL_ERROR] * 3
    assert c.get("/")["headers"][":status"] == "200"  # after the resets: their lines are out
    c.close()
    assert h2srv.stderr_text().count("malformed request from") == 1, h2srv.stderr_text()


@pytest.mark.parametrize("field", [
    ("x y", "1"),         # not a token
    ("x-a", "a\x01b"),    # a control byte
    ("x-a", " a"),        # leading whitespace (RFC 9113 8.2.1)
    ("x-a", "a\t"),       # trailing whitespace
])
def test_field_a_request_may_not_hold_is_400(h2srv, field):
    """As over HTTP/1.1: a 400 with a log line (RFC 9113 8.1.1 lets a
    server answer a malformed request), and the connection serves on."""
    c = H2(h2srv.addr, validate=False)
    r = c.get("/", headers=[field])
    assert r["headers"][":status"] == "400", r
    wait_log(h2srv, "400 Bad Request from 127.0.0.1 (HTTP/2 stream %d)" % (c.conn.highest_outbound_stream_id))
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


def raw_client(addr):
    """A socket past the preface and SETTINGS, for hand-made frames."""
    c = H2(addr)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    return c


@pytest.mark.parametrize("data,code", [
    (frame(0x0, 0x1, 0, b"x"), PROTOCOL_ERROR),                  # DATA on stream 0
    (frame(0x4, 0x0, 0, b"\x00\x03\x00"), FRAME_SIZE_ERROR),     # SETTINGS not a multiple of 6
    (frame(0x4, 0x1, 0, b"\x00\x03\x00\x00\x00\x01"), FRAME_SIZE_ERROR),  # SETTINGS ack with payload
    (frame(0x4, 0x0, 0, b"\x00\x04\x80\x00\x00\x00"), FLOW_CONTROL_ERROR),  # window > 2^31-1
    (frame(0x4, 0x0, 0, b"\x00\x05\x00\x00\x00\x10"), PROTOCOL_ERROR),  # max frame size < 16384
    (frame(0x6, 0x0, 0, b"12345"), FRAME_SIZE_ERROR),            # PING of 5 bytes
    (frame(0x8, 0x0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR),   # WINDOW_UPDATE 0 on the connection
    (frame(0x1, 0x5, 2, b"\x82"), PROTOCOL_ERROR),               # HEADERS on an even (server) stream id
    (frame(0x1, 0x5, 1, b"\xff\xff\xff\xff\x0f"), COMPRESSION_ERROR),  # HPACK index out of range (7541)
    (frame(0x9, 0x4, 1, b"\x82"), PROTOCOL_ERROR),               # CONTINUATION without HEADERS
    (frame(0x0, 0x0, 0, b"x" * 16385)[:9] + b"x" * 16385, FRAME_SIZE_ERROR),  # frame over 16384
])
def test_connection_errors(h2srv, data, code):
    c = raw_client(h2srv.addr)
    c.raw(data)
    assert c.wait_goaway() is not None and c.goaway[0] == code
    c.close()
    # Nobody else noticed.
    other = H2(h2srv.addr)
    assert other.get("/")["headers"][":status"] == "200"
    other.close()


def test_stream_window_update_zero_is_protocol_error(h2srv):
    """A stream error by RFC 9113 6.9, which nghttp2 raises to a connection
    error (5.4 allows it): the code is PROTOCOL_ERROR either way."""
    c = raw_client(h2srv.addr)
    sid = c.request("/slow?s=0.3")
    c.raw(frame(0x8, 0x0, sid, b"\x00\x00\x00\x00"))
    c.wait(lambda: c.responses[sid]["reset"] is not None or c.goaway is not None)
    assert c.responses[sid]["reset"] == PROTOCOL_ERROR or c.goaway[0] == PROTOCOL_ERROR
    c.close()


def test_settings_are_acknowledged_and_advertised(h2srv):
    c = H2(h2srv.addr)
    acked = []
    orig = c.conn.receive_data

    def spy(data):
        evs = orig(data)
        acked.extend(e for e in evs if isinstance(e, h2.events.SettingsAcknowledged))
        return evs
    c.conn.receive_data = spy
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100000})
    c.flush()
    assert c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    # The ack of the client's new SETTINGS (it may come in the same read).
    window = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE

    def new_window_acked():
        return any(window in e.changed_settings and e.changed_settings[window].new_value == 100000 for e in acked)
    assert c.wait(new_window_acked), "no ack of the new SETTINGS: %r" % acked
    assert c.conn.remote_settings.max_header_list_size == 65536
    c.close()


def test_header_list_over_the_limit_is_431(server):
    srv = server(APPS["wsgi"], "--limit-request-header-size", "4096")
    c = H2(srv.addr)
    r = c.get("/", headers=[("x-big", "a" * 5000)])
    assert r["headers"][":status"] == "431"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


def test_body_over_the_limit_is_413(server):
    srv = server(APPS["wsgi"], "--limit-request-body", "1000")
    c = H2(srv.addr)
    r = c.get("/echo", method="POST", body=b"x" * 2000)
    assert r["headers"][":status"] == "413"
    r = c.get("/echo", method="POST", body=b"x" * 5000, headers=[("content-length", "5000")])
    assert r["headers"][":status"] == "413"
    assert c.get("/")["headers"][":status"] == "200"
    c.close()


# ---- abuse: closed, and nobody else pays ---------------------------------

def test_rapid_reset_is_closed(h2srv):
    """CVE-2023-44487: streams opened and reset at once, thousands of times.
    nghttp2's limit ends the session with INTERNAL_ERROR."""
    c = raw_client(h2srv.addr)
    hdr = c.conn.encoder.encode([(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                 (":authority", "x")])
    burst = b"".join(frame(0x1, 0x5, sid, hdr) + frame(0x3, 0, sid, struct.pack(">I", CANCEL))
                     for sid in range(1, 6001, 2))
    try:
        c.raw(burst)
    except OSError:
        pass
    c.sock.settimeout(scaled(10))
    code = None
    buf = b""
    while True:
        try:
            d = c.sock.recv(65536)
        except (OSError, socket.timeout):
            break
        if not d:
            break
        buf += d
    # Find the GOAWAY among the frames the server sent.
    i = 0
    while i + 9 <= len(buf):
        ln = int.from_bytes(buf[i:i + 3], "big")
        if buf[i + 3] == 0x7 and i + 9 + 8 <= len(buf):
            code = int.from_bytes(buf[i + 13:i + 17], "big")
        i += 9 + ln
    assert code == INTERNAL_ERROR
    other = H2(h2srv.addr)
    assert other.get("/")["headers"][":status"] == "200"
    other.close()


def test_continuation_flood_is_closed(h2srv):
    """The 2024 CONTINUATION flood: a header block that never ends."""
    c = raw_client(h2srv.addr)
    first = c.conn.encoder.encode([(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                   (":authority", "x")])
    c.raw(frame(0x1, 0x0, 1, first))
    try:
        for _ in range(200):
            c.raw(frame(0x9, 0x0, 1, b"\x40\x01a\x01b"))
    except OSError:
        pass
    c.sock.settimeout(scaled(10))
    closed = False
    try:
        while c.sock.recv(65536):
            pass
        closed = True
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    assert closed
    other = H2(h2srv.addr)
    assert other.get("/")["headers"][":status"] == "200"
    other.close()


def test_others_unaffected_by_an_abuser(h2srv):
    results = []

    def good():
        c = H2(h2srv.addr)
        for _ in range(20):
            results.append(c.get("/")["headers"][":status"])
        c.close()
    t = threading.Thread(target=good)
    t.start()
    for _ in range(5):
        bad = raw_client(h2srv.addr)
        bad.raw(frame(0x0, 0x1, 0, b"x"))
        bad.wait_goaway()
        bad.close()
    t.join(scaled(30))
    assert results == ["200"] * 20


# ---- proxy headers on a stream ----------------------------------------------

def test_forwarded_headers_on_a_stream_are_the_streams_own(server):
    """A stream's X-Forwarded-For from a trusted peer sets its client, as
    over HTTP/1.1; a stream without one is the socket's peer, even when the
    loop's request buffer last served an HTTP/1.1 request that had one."""
    srv = server("echo:app", "--workers", "1")
    r = fetch(srv, "/", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert r.json()["environ"]["REMOTE_ADDR"] == "203.0.113.7"
    c = H2(srv.addr)
    plain = c.get("/")
    assert plain["headers"][":status"] == "200"
    assert json.loads(bytes(plain["data"]))["environ"]["REMOTE_ADDR"] == "127.0.0.1"
    sid = c.request("/", headers=[("x-forwarded-for", "198.51.100.9")])
    c.wait(lambda: c.responses[sid]["ended"])
    assert json.loads(bytes(c.responses[sid]["data"]))["environ"]["REMOTE_ADDR"] == "198.51.100.9"
    c.close()


def test_forwarded_headers_on_a_stream_are_ignored_with_no_proxy_headers(server):
    """--no-proxy-headers: a stream's X-Forwarded-* change nothing, even on
    a loop whose request buffer last served an HTTP/1.1 request."""
    srv = server("echo:app", "--workers", "1", "--no-proxy-headers")
    r = fetch(srv, "/", headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    env = r.json()["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
    c = H2(srv.addr)
    sid = c.request("/", headers=[("x-forwarded-for", "198.51.100.9"), ("x-forwarded-proto", "https")])
    c.wait(lambda: c.responses[sid]["ended"])
    env = json.loads(bytes(c.responses[sid]["data"]))["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.9"
    c.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_streams_of_a_tls_connection_run_in_several_interpreters(server, certs, kind):
    """As over cleartext: the streams of one TLS connection spread to other
    loops' interpreters."""
    cert, key = certs
    srv = server(APPS[kind], "--mode", "interpreters", "--certfile", cert, "--keyfile", key)
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection(srv.addr, timeout=scaled(10)), server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    c = H2(srv.addr, sock=sock)
    c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
    streams_meet_in_several_interpreters(c, 20)
    c.close()
