"""Proxy headers (Forwarded, X-Forwarded-For/-Proto/-Host/-Port): believed
from --forwarded-allow-ips peers only, where they set the client address, the
scheme and the host the app sees; from anyone else they change nothing."""
import json
import os
import tempfile
import time

import pytest

from conftest import Conn, build_request, fetch, free_port, host_header, scaled

XFF = "X-Forwarded-For"


def environ(srv, headers):
    r = fetch(srv, "/", headers=headers)
    assert r.status == 200, r
    return r.json()["environ"]


def scope(srv, headers):
    r = fetch(srv, "/scope", headers=headers)
    assert r.status == 200, r
    return r.json()


@pytest.fixture
def wsgi(server):
    return server("echo:app", "--workers", "1")


@pytest.fixture
def asgi(server):
    return server("asgi_app:app", "--workers", "1")


def test_x_forwarded_for_sets_the_client(wsgi):
    env = environ(wsgi, [(XFF, "203.0.113.7")])
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "0")
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # the header itself is passed on


def test_right_most_untrusted_hop_is_the_client(wsgi):
    # The client wrote the first entry itself; 127.0.0.1 is a trusted proxy.
    env = environ(wsgi, [(XFF, "198.51.100.1, 203.0.113.7, 127.0.0.1")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_every_hop_trusted_gives_the_left_most(wsgi):
    assert environ(wsgi, [(XFF, "127.0.0.1, 127.0.0.1")])["REMOTE_ADDR"] == "127.0.0.1"


def test_proto_host_and_port(wsgi):
    env = environ(wsgi, [(XFF, "203.0.113.7"), ("X-Forwarded-Proto", "https"),
                         ("X-Forwarded-Host", "shop.example")])
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "shop.example", "443")
    env = environ(wsgi, [("X-Forwarded-Host", "shop.example"), ("X-Forwarded-Port", "8443")])
    assert env["wsgi.url_scheme"] == "http"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "8443")


def test_rfc7239_forwarded(wsgi):
    env = environ(wsgi, [("Forwarded", 'for=198.51.100.1, for="[2001:db8::17]:4711";proto=https;host=shop.example')])
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::17", "4711")
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example"


def test_forwarded_wins_over_x_forwarded(wsgi):
    env = environ(wsgi, [("Forwarded", "for=192.0.2.60"), (XFF, "203.0.113.7")])
    assert env["REMOTE_ADDR"] == "192.0.2.60"


def test_spaced_items_wss_and_bracketed_ipv6(wsgi):
    env = environ(wsgi, [(XFF, "198.51.100.1, 203.0.113.7 \t, 127.0.0.1"), ("X-Forwarded-Proto", "wss")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    env = environ(wsgi, [(XFF, "[2001:db8::1]:8080")])
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "8080")


def test_other_x_forwarded_fields_change_nothing(wsgi):
    env = environ(wsgi, [("X-Forwarded-Server", "203.0.113.9"), ("X-Forwarded-Prefix", "/app")])
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")


@pytest.mark.parametrize("value", ["nonsense", "", "300.1.2.3", "1.2.3.4:99999", "[::1", "unknown",
                                   "[::1]x", "[::1]:", "1.2.3.4:", "1.2.3.4:12a", "1.2.3.4:123456",
                                   "1" * 70])
def test_malformed_values_are_ignored(wsgi, value):
    env = environ(wsgi, [(XFF, value), ("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Port", "http")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["SERVER_PORT"] != "http"


def test_untrusted_peer_changes_nothing(server):
    srv = server("echo:app", "--workers", "1", "--forwarded-allow-ips", "10.0.0.0/8")
    env = environ(srv, [(XFF, "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "shop.example")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] != "shop.example"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


def test_no_proxy_headers_changes_nothing(server):
    srv = server("echo:app", "--workers", "1", "--no-proxy-headers")
    env = environ(srv, [(XFF, "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_keep_alive_requests_do_not_inherit_a_previous_one(wsgi):
    with Conn(wsgi) as c:
        host = host_header(c.addr)
        c.send(build_request("GET", "/", [(XFF, "203.0.113.7"), ("X-Forwarded-Proto", "https")], host=host))
        first = c.response().json()["environ"]
        c.send(build_request("GET", "/", [], host=host))
        second = c.response().json()["environ"]
    assert (first["REMOTE_ADDR"], first["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    assert (second["REMOTE_ADDR"], second["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_asgi_client_scheme_and_host(asgi):
    s = scope(asgi, [(XFF, "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "shop.example")])
    assert s["client"] == ["203.0.113.7", 0]
    assert s["scheme"] == "https"
    assert ["host", "shop.example"] in s["headers"]


def test_asgi_websocket_scheme_is_wss(asgi):
    with Conn(asgi) as c:
        c.send(build_request("GET", "/ws/echo", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"), ("X-Forwarded-Proto", "https")], host=host_header(c.addr)))
        assert c.read_head().status == 101
        key = os.urandom(4)
        c.send(b"\x81\x85" + key + bytes(b ^ key[i % 4] for i, b in enumerate(b"scope")))
        deadline = time.monotonic() + scaled(10)
        head = c._read_exact(2, deadline, "a frame")
        n = head[1] & 0x7f
        if n == 126:
            n = int.from_bytes(c._read_exact(2, deadline, "length"), "big")
        assert json.loads(c._read_exact(n, deadline, "payload"))["scheme"] == "wss"


# ---- behind a real nginx ---------------------------------------------------------

NGINX_FORWARDED = """
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host shop.example;"""


@pytest.mark.parametrize("via", ["unix", "tcp"])
def test_behind_nginx(server, nginx, via):
    # nginx reaches gorgon over a unix socket (always trusted) or loopback TCP
    # (trusted as 127.0.0.1); the test client is loopback too, so for the
    # unix case nothing else is trusted and the client's own spoofed entry
    # must not be believed.
    if via == "unix":
        sockdir = tempfile.mkdtemp(prefix="gorgon-sock-")  # nginx's workers run as nobody
        os.chmod(sockdir, 0o755)
        sock = os.path.join(sockdir, "app.sock")
        srv = server("echo:app", "--workers", "2", "--bind", "unix:" + sock, "--forwarded-allow-ips", "")
        upstream = "unix:" + sock
        expected_client = "127.0.0.1"
        os.chmod(sock, 0o777)
    else:
        port = free_port()
        srv = server("echo:app", "--workers", "2", "--bind", "127.0.0.1:%d" % port)
        upstream = "127.0.0.1:%d" % port
        expected_client = "198.51.100.9"  # loopback is trusted here, so the hop before it counts
    front = nginx([upstream], NGINX_FORWARDED)
    for _ in range(3):  # over nginx's kept-alive upstream connections
        r = fetch(front, "/", headers=[(XFF, "198.51.100.9")])
        assert r.status == 200, (r, srv.stderr_text())
        env = r.json()["environ"]
        assert env["REMOTE_ADDR"] == expected_client
        assert env["wsgi.url_scheme"] == "https"
        assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (
            "shop.example", "shop.example", "443")
