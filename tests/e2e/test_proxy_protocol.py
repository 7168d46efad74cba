"""--proxy-protocol: a PROXY header (v1 text or v2 binary) from a trusted peer
sets the client address the app sees (REMOTE_ADDR/REMOTE_PORT, ASGI client,
and ASGI server from the header's destination); anything else closes the
connection with one log line and no HTTP answer. Also through a real HAProxy
(send-proxy, send-proxy-v2)."""
import contextlib
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import Conn, free_port, ipv6_loopback_available, run_gorgon, scaled, wait_for

PP = ("--workers", "1", "--proxy-protocol")
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /echo HTTP/1.1\r\nHost: h.example\r\n\r\n"
GET_SCOPE = b"GET /scope HTTP/1.1\r\nHost: h.example\r\n\r\n"


def v2(cmd, fam, block):
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(block)) + block


def v2_inet(src, dst, sport, dport, tlvs=b""):
    return v2(1, 0x11, socket.inet_aton(src) + socket.inet_aton(dst) +
              struct.pack("!HH", sport, dport) + tlvs)


def v2_inet6(src, dst, sport, dport):
    return v2(1, 0x21, socket.inet_pton(socket.AF_INET6, src) +
              socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!HH", sport, dport))


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


@pytest.fixture
def wsgi(shared_server):
    return shared_server("router:app", *PP)


@pytest.fixture
def asgi(shared_server):
    return shared_server("asgi_app:app", *PP)


def environ(srv, data):
    with Conn(srv) as c:
        c.send(data)
        r = c.response()
        port = c.local_port
    assert r.status == 200, r
    return r.json()["environ"], port


def scope(srv, data):
    with Conn(srv) as c:
        c.send(data)
        r = c.response()
        port = c.local_port
    assert r.status == 200, r
    return r.json(), port


def refused(srv, data, reason):
    """The connection is closed with no bytes sent back and one log line."""
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        c.send(data)
        closed = c.closed_within(scaled(3))
        got = bytes(c.buf)
    assert closed, "connection left open"
    assert got == b"", "an answer to a refused connection: %r" % got[:200]
    wait_for(lambda: "PROXY protocol: closing" in srv.stderr_bytes()[offset:].decode(), 3)
    log = srv.stderr_bytes()[offset:].decode("utf-8", "replace")
    lines = [line for line in log.splitlines() if "PROXY protocol" in line]
    assert len(lines) == 1, log
    assert reason in lines[0], lines[0]
    return lines[0]


# ---- accepted headers ---------------------------------------------------------------

def test_v1_tcp4(wsgi):
    env, _ = environ(wsgi, b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n" + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.10", "56324")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.example", "80"), "Host still decides"


def test_v1_tcp6(wsgi):
    env, _ = environ(wsgi, b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n" + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "40000")


def test_v1_unknown_keeps_socket_address(wsgi):
    env, port = environ(wsgi, b"PROXY UNKNOWN\r\n" + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(port))


def test_v2_tcp4_with_tlvs(wsgi):
    tlvs = tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0xE0, b"\x00" * 40)
    env, _ = environ(wsgi, v2_inet("203.0.113.5", "198.51.100.1", 61000, 8080, tlvs) + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.5", "61000")


def test_v2_tcp6(wsgi):
    env, _ = environ(wsgi, v2_inet6("2001:db8::7", "2001:db8::8", 1234, 443) + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::7", "1234")


def test_v2_unix(wsgi):
    block = b"/run/client.sock".ljust(108, b"\0") + b"/run/gorgon.sock".ljust(108, b"\0")
    env, _ = environ(wsgi, v2(1, 0x31, block) + GET)
    # As for a client on a unix socket bind.
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("unix", "0")


def test_v2_local_keeps_socket_address(wsgi):
    env, port = environ(wsgi, v2(0, 0x00, b"") + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(port))
    # Addresses in a LOCAL header are ignored.
    env, port = environ(wsgi, v2(0, 0x11, socket.inet_aton("1.2.3.4") * 2 + b"\0\1\0\2") + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(port))


def test_asgi_client_and_server_from_v2(asgi):
    s, _ = scope(asgi, v2_inet("203.0.113.5", "198.51.100.1", 61000, 8080) + GET_SCOPE)
    assert s["client"] == ["203.0.113.5", 61000]
    assert s["server"] == ["198.51.100.1", 8080]


def test_asgi_client_and_server_from_v1(asgi):
    s, _ = scope(asgi, b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n" + GET_SCOPE)
    assert s["client"] == ["2001:db8::1", 40000]
    assert s["server"] == ["2001:db8::2", 8443]


def test_asgi_local_keeps_socket_addresses(asgi):
    s, port = scope(asgi, v2(0, 0x00, b"") + GET_SCOPE)
    assert s["client"] == ["127.0.0.1", port]
    assert s["server"] == ["127.0.0.1", asgi.port]


def test_split_across_reads_and_kept_for_keepalive(wsgi):
    header = v2_inet("192.0.2.1", "192.0.2.2", 5555, 80)
    with Conn(wsgi) as c:
        for piece in (header[:5], header[5:13], header[13:17], header[17:], GET[:10], GET[10:]):
            c.send(piece)
            time.sleep(0.05)
        first = c.response().json()["environ"]
        # The next request on the connection comes without a header.
        c.send(GET)
        second = c.response().json()["environ"]
    for env in (first, second):
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "5555")


def test_v1_split_across_reads(asgi):
    line = b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n"
    with Conn(asgi) as c:
        c.send_slowly(line + GET_SCOPE, step=7, pause=0.01)
        s = c.response().json()
    assert s["client"] == ["192.0.2.10", 56324]


# ---- refused ------------------------------------------------------------------------

def test_missing_header_refused(wsgi):
    refused(wsgi, GET, "no PROXY protocol signature")


def test_wrong_v2_signature_refused(asgi):
    refused(asgi, SIG[:11] + b"X" + b"\x21\x11\x00\x0c" + b"\0" * 12 + GET_SCOPE,
            "no PROXY protocol signature")


def test_v1_too_long_refused(wsgi):
    refused(wsgi, b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + GET, "no CRLF within 107 bytes")


def test_v1_malformed_refused(asgi):
    refused(asgi, b"PROXY TCP4 192.0.2.10 198.51.100.7 056324 443\r\n" + GET_SCOPE,
            "malformed port")


def test_v2_too_long_refused(wsgi):
    refused(wsgi, SIG + b"\x21\x11\xff\xff" + b"\0" * 200, "longer than 4096")


def test_v2_dgram_refused(wsgi):
    refused(wsgi, v2(1, 0x12, b"\0" * 12) + GET, "not STREAM")


def test_incomplete_header_at_timeout(shared_server):
    srv = shared_server("router:app", *PP, "--header-timeout", "1")
    refused(srv, b"PROXY TCP4 192.0.2.10", "incomplete PROXY header at the header timeout")


def test_untrusted_peer_refused(shared_server):
    srv = shared_server("router:app", *PP, "--forwarded-allow-ips", "10.0.0.0/8, ::1")
    refused(srv, b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n" + GET,
            "peer not in --forwarded-allow-ips")


def test_trust_everyone_from_env(server):
    srv = server("router:app", "--workers", "1", env={
        "GORGON_PROXY_PROTOCOL": "1", "GORGON_FORWARDED_ALLOW_IPS": "10.0.0.0/8,*"})
    env, _ = environ(srv, b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n" + GET)
    assert env["REMOTE_ADDR"] == "192.0.2.10"


def test_bad_trust_list_is_a_startup_error():
    r = run_gorgon("router:app", "--proxy-protocol", "--forwarded-allow-ips", "10.0.0.0/33")
    assert r.returncode != 0
    assert b"--forwarded-allow-ips" in r.stderr and b"10.0.0.0/33" in r.stderr, r.stderr[-500:]


def test_per_listener(server):
    # One plain bind and one that expects the header, in one server.
    plain, proxied = free_port(), free_port()
    srv = server("router:app", "--workers", "1", "--bind", "127.0.0.1:%d" % plain,
                 "--proxy-protocol-bind", "127.0.0.1:%d" % proxied)
    wait_for(lambda: "127.0.0.1:%d" % proxied in srv.stderr_text(), 10, what="second listener")
    env, port = environ(("127.0.0.1", plain), GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(port))
    with Conn(("127.0.0.1", plain)) as c:
        c.send(b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n" + GET)
        assert c.response().status == 400, "a PROXY line on the plain bind is a bad request"
    env, _ = environ(("127.0.0.1", proxied),
                     b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n" + GET)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.10", "56324")
    offset = len(srv.stderr_bytes())
    with Conn(("127.0.0.1", proxied)) as c:
        c.send(GET)
        assert c.closed_within(scaled(3)) and not c.buf
    wait_for(lambda: "no PROXY protocol signature" in srv.stderr_bytes()[offset:].decode(), 3)


def test_header_ignored_without_the_flag(router):
    # Without --proxy-protocol nobody can set the address: the line is a bad request.
    with Conn(router) as c:
        c.send(b"PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n" + GET)
        r = c.response()
    assert r.status == 400, r


# ---- through HAProxy ------------------------------------------------------------------

HAPROXY_CFG = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
{frontends}
"""

FRONTEND = """
frontend f_{name}
    bind {bind}
    default_backend b_{name}
backend b_{name}
    server gorgon 127.0.0.1:{port} {send}
"""


@contextlib.contextmanager
def haproxy(tmp_path, gorgon_port, frontends):
    """Runs haproxy in the foreground with one frontend per (name, bind, send)."""
    exe = shutil.which("haproxy")
    if exe is None:
        pytest.skip("haproxy is not installed (Debian package haproxy; scripts/bootstrap)")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(frontends="".join(
        FRONTEND.format(name=n, bind=b, port=gorgon_port, send=s) for n, b, s in frontends)))
    log = open(tmp_path / "haproxy.log", "wb")
    proc = subprocess.Popen([exe, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def connect_when_ready(addr, proc, timeout=10):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            return Conn(addr)
        except OSError:
            assert proc.poll() is None, "haproxy exited"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_through_haproxy_wsgi(tmp_path, wsgi, send):
    port = free_port()
    with haproxy(tmp_path, wsgi.port, [("v4", "127.0.0.1:%d" % port, send)]) as proc:
        with connect_when_ready(("127.0.0.1", port), proc) as c:
            c.send(GET)
            r = c.response()
            client_port = c.local_port
    assert r.status == 200, r
    env = r.json()["environ"]
    # Without the header the app would see haproxy's own outgoing port.
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(client_port))


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_through_haproxy_asgi(tmp_path, asgi, send):
    port = free_port()
    frontends = [("v4", "127.0.0.1:%d" % port, send)]
    port6 = None
    if ipv6_loopback_available():
        port6 = free_port("::1")
        frontends.append(("v6", "[::1]:%d" % port6, send))
    with haproxy(tmp_path, asgi.port, frontends) as proc:
        with connect_when_ready(("127.0.0.1", port), proc) as c:
            c.send(GET_SCOPE)
            s = c.response().json()
            client_port = c.local_port
        assert s["client"] == ["127.0.0.1", client_port]
        assert s["server"] == ["127.0.0.1", port], "the address the client connected to"
        if port6:
            with connect_when_ready(("::1", port6), proc) as c:
                c.send(GET_SCOPE)
                s = c.response().json()
                client_port = c.local_port
            assert s["client"] == ["::1", client_port]
            assert s["server"] == ["::1", port6]
