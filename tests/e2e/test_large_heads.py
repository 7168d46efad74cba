"""Request heads larger than a connection's inline read buffer (16 KiB): the
buffer is replaced by a heap block that doubles as the head grows, and every
header must then be read from the new block; what follows the head (its
body, pipelined requests) must survive the move. Beyond
--limit-request-header-size the answer is 431."""
import hashlib
import json

import pytest

from conftest import Conn, build_request, fetch

ASGI_ARGS = ("--workers", "1")


def big_headers(total, size=1500):
    """Distinct fields (each value different in every byte position that
    matters) adding up to about `total` bytes of head."""
    out = []
    for i in range(total // (size + 12)):
        fill = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        out.append(("X-Big-%03d" % i, ("%03d" % i) + fill * (size - 6) + ("%03d" % i)))
    return out


def head_size(req):
    return req.index(b"\r\n\r\n") + 4


@pytest.mark.parametrize("kib", [20, 60])
def test_wsgi_large_head_then_body_and_pipelined_request(router, kib):
    hdrs = big_headers(kib * 1024)
    body = bytes(range(256)) * 40
    first = build_request("POST", "/echo?first=1", headers=hdrs, body=body, host="x")
    assert kib * 1024 - 2048 < head_size(first) < kib * 1024 + 2048
    with Conn(router, timeout=20) as c:
        c.send(first + build_request("GET", "/echo/next?x=2", host="x")
               + build_request("POST", "/echo/third", body=b"tail", host="x"))
        r = c.response()
        assert r.status == 200, r
        j = r.json()
        env = j["environ"]
        for k, v in hdrs:
            key = "HTTP_" + k.upper().replace("-", "_")
            assert env.get(key) == v, "header %s came back as %r" % (k, (env.get(key) or "")[:40])
        assert env["QUERY_STRING"] == "first=1" and env["HTTP_HOST"] == "x"
        assert j["body_sha256"] == hashlib.sha256(body).hexdigest()
        r2 = c.response()
        assert r2.status == 200 and r2.json()["environ"]["PATH_INFO"] == "/echo/next"
        assert r2.json()["environ"]["QUERY_STRING"] == "x=2"
        r3 = c.response()
        assert r3.status == 200 and r3.json()["body"] == "tail"
        # and the connection goes on with an ordinary request
        assert c.request("GET", "/hello").body == b"Hello, world!\n"


def test_wsgi_large_head_sent_in_pieces(router):
    """The head arrives in 1000-byte pieces, so the buffer grows between
    reads of a partial head."""
    hdrs = big_headers(40 * 1024)
    req = build_request("GET", "/echo/pieces", headers=hdrs, host="x")
    with Conn(router, timeout=20) as c:
        for i in range(0, len(req), 1000):
            c.send(req[i:i + 1000])
        r = c.response()
        assert r.status == 200, r
        env = r.json()["environ"]
        assert [env.get("HTTP_" + k.upper().replace("-", "_")) for k, _ in hdrs] == [v for _, v in hdrs]


@pytest.mark.parametrize("kib", [20, 60])
def test_asgi_large_head_then_streamed_body_and_pipelined_request(shared_server, kib):
    srv = shared_server("asgi_app:app", *ASGI_ARGS)
    hdrs = big_headers(kib * 1024)
    body = bytes(range(256)) * 400  # 100 KiB, streamed to the app
    with Conn(srv, timeout=20) as c:
        c.send(build_request("GET", "/scope", headers=hdrs, host="x")
               + build_request("POST", "/echo", headers=hdrs[:3], body=body, host="x")
               + build_request("GET", "/fixed", host="x"))
        r = c.response()
        assert r.status == 200, r
        got = {k: v for k, v in r.json()["headers"]}
        for k, v in hdrs:
            assert got.get(k.lower()) == v, "header %s came back as %r" % (k, (got.get(k.lower()) or "")[:40])
        r2 = c.response()
        assert r2.status == 200 and r2.body == body
        assert c.response().body == b"Hello, world!\n"


def test_head_over_default_limit_431(router):
    hdrs = big_headers(70 * 1024)
    req = build_request("GET", "/echo", headers=hdrs, host="x")
    assert head_size(req) > 65536
    with Conn(router, timeout=20) as c:
        c.send(req)
        r = c.response()
        assert r.status == 431, r
        assert r.has_token("Connection", "close")


def test_limit_request_header_size(shared_server):
    srv = shared_server("router:app", "--workers", "1", "--limit-request-header-size", "24576")
    under = big_headers(22 * 1024)
    over = big_headers(26 * 1024)
    assert head_size(build_request("GET", "/echo", headers=under, host="x")) <= 24576
    assert head_size(build_request("GET", "/echo", headers=over, host="x")) > 24576
    r = fetch(srv, "/echo", headers=under, timeout=20)
    assert r.status == 200 and json.loads(r.body)["environ"]["HTTP_X_BIG_000"] == under[0][1]
    assert fetch(srv, "/echo", headers=over, timeout=20).status == 431
    # an incomplete head already over the limit is refused without waiting for its end
    with Conn(srv, timeout=20) as c:
        c.send(build_request("GET", "/echo", headers=over, host="x")[:-4] + b"\r\nX-More: 1")
        r = c.response()
        assert r.status == 431, r


def exact_head(method, target, size, body):
    """A request whose head is exactly `size` bytes (an X-Pad field takes up
    the rest), followed by its body."""
    hdrs = big_headers(size - 2048)
    base = build_request(method, target, headers=hdrs + [("X-Pad", "")], body=body, host="x")
    pad = size - head_size(base)
    assert 0 <= pad < 8000
    req = build_request(method, target, headers=hdrs + [("X-Pad", "p" * pad)], body=body, host="x")
    assert head_size(req) == size
    return hdrs, req


@pytest.mark.parametrize("size", [16384, 32768])
@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_head_that_fills_the_buffer_then_body(router, shared_server, size, interface):
    """A head that exactly fills the read buffer: the buffer must grow after
    the head is complete, to read the body, and the parsed headers must
    follow the head into the new block."""
    body = bytes(range(256)) * 200
    if interface == "wsgi":
        srv, target = router, "/echo/exact"
    else:
        srv, target = shared_server("asgi_app:app", *ASGI_ARGS), "/echo-head"
    hdrs, req = exact_head("POST", target, size, body)
    with Conn(srv, timeout=20) as c:
        c.send(req[:size])
        c.send(req[size:])
        r = c.response()
        assert r.status == 200, r
        j = r.json()
        got = j["environ"] if interface == "wsgi" else j["headers"]
        for k, v in hdrs:
            key = "HTTP_" + k.upper().replace("-", "_") if interface == "wsgi" else k.lower()
            assert got.get(key) == v, "header %s came back as %r" % (k, (got.get(key) or "")[:40])
        assert j["body_sha256"] == hashlib.sha256(body).hexdigest()
