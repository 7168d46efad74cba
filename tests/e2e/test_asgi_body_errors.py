"""Errors in a request body that an ASGI app is streaming (receive()): a bad
chunk is a 400, a body beyond --limit-request-body a 413, a body that stops
arriving is given up after --io-timeout. In each case the app hears
http.disconnect and the connection is closed; the worker goes on serving."""
import pytest

from conftest import Conn, build_request, chunked, fetch, scaled, wait_for

ARGS = ("--workers", "1", "--limit-request-body", "1000", "--io-timeout", "1")


@pytest.fixture
def srv(shared_server):
    return shared_server("asgi_app:app", *ARGS)


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def upload(marker, headers, body=b""):
    return build_request("POST", "/upload?marker=%s" % marker, headers=headers, host="x") + body


def test_bad_chunk_is_400(srv, tmp_path):
    marker = tmp_path / "m"
    with Conn(srv, timeout=20) as c:
        c.send(upload(marker, {"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n"))
        wait_for(lambda: lines(marker), 10, what="the app to receive the first chunk")
        c.send(b"zz\r\nbad\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 400, r
        assert r.has_token("Connection", "close")
        assert c.closed_within(scaled(5))
    wait_for(lambda: "disconnect total=5" in lines(marker), 10, what="the app to hear the disconnect")
    assert fetch(srv, "/fixed").body == b"Hello, world!\n"


def test_chunked_body_over_limit_is_413(srv, tmp_path):
    marker = tmp_path / "m"
    with Conn(srv, timeout=20) as c:
        c.send(upload(marker, {"Transfer-Encoding": "chunked"}, chunked(b"x" * 600, size=600)[:-5]))
        wait_for(lambda: lines(marker), 10, what="the app to receive the first chunk")
        c.send(chunked(b"y" * 600, size=600))
        r = c.response()
        assert r.status == 413, r
        assert r.has_token("Connection", "close")
        assert c.closed_within(scaled(5))
    wait_for(lambda: any(l.startswith("disconnect") for l in lines(marker)), 10,
             what="the app to hear the disconnect")
    assert "done total=1200" not in lines(marker)
    assert fetch(srv, "/fixed").body == b"Hello, world!\n"


def test_declared_length_over_limit_is_413_before_the_app(srv, tmp_path):
    marker = tmp_path / "m"
    with Conn(srv, timeout=20) as c:
        c.send(upload(marker, {"Content-Length": "5000"}))
        r = c.response()
        assert r.status == 413, r
        assert c.closed_within(scaled(5))
    assert lines(marker) == []


def test_half_sent_body_is_given_up_after_io_timeout(srv, tmp_path):
    marker = tmp_path / "m"
    with Conn(srv, timeout=30) as c:
        c.send(upload(marker, {"Content-Length": "800"}, b"a" * 300))
        wait_for(lambda: lines(marker), 10, what="the app to receive the first bytes")
        # --io-timeout 1: the connection goes well before this generous bound
        assert c.closed_within(scaled(15)), "a stalled body kept its connection"
        assert b"200 OK" not in bytes(c.buf)
    wait_for(lambda: "disconnect total=300" in lines(marker), 10, what="the app to hear the disconnect")
    assert fetch(srv, "/fixed").body == b"Hello, world!\n"
