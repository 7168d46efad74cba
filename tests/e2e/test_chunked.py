"""Chunked request bodies (decoding) and chunked responses (framing)."""
import os

import pytest

from conftest import Conn, build_request, chunked, fetch


def post_chunked(router, raw_body, target="/echo"):
    with Conn(router) as c:
        c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               % target.encode() + raw_body)
        return c.response()


@pytest.mark.parametrize("size", [1, 3, 100, 70000])
def test_chunked_request_body(router, size):
    body = os.urandom(50000)
    j = post_chunked(router, chunked(body, size)).json()
    assert j["body_len"] == len(body) and j["body"].encode("latin-1") == body


def test_chunked_environ(router):
    j = post_chunked(router, chunked(b"hello", 2)).json()
    # no Content-Length was sent: CONTENT_LENGTH is absent/empty, or the true length
    assert j["environ"].get("CONTENT_LENGTH", "") in ("", "5"), j["environ"]
    assert "HTTP_TRANSFER_ENCODING" not in j["environ"] or \
        j["environ"]["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert j["wsgi"]["wsgi.input_terminated"] is True


def test_chunked_empty_body(router):
    assert post_chunked(router, b"0\r\n\r\n").json()["body"] == ""


def test_chunk_sizes_hex_any_case_and_leading_zeros(router):
    raw = b"A\r\n0123456789\r\na\r\nabcdefghij\r\n000F\r\n" + b"F" * 15 + b"\r\n0\r\n\r\n"
    assert post_chunked(router, raw).json()["body"] == "0123456789abcdefghij" + "F" * 15


def test_chunk_extensions_ignored(router):
    raw = b"5;name=value\r\nhello\r\n6;x;y=\"q\"\r\n world\r\n0;last\r\n\r\n"
    assert post_chunked(router, raw).json()["body"] == "hello world"


def test_chunked_trailers_accepted(router):
    raw = b"5\r\nhello\r\n0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
    with Conn(router) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + raw +
               build_request("GET", "/echo/after", host="x"))
        assert c.response().json()["body"] == "hello"
        assert c.response().json()["environ"]["PATH_INFO"] == "/echo/after"


def test_chunked_body_byte_by_byte(router):
    with Conn(router) as c:
        c.send_slowly(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                      chunked(b"slowly but surely", 5), pause=0.001)
        assert c.response().json()["body"] == "slowly but surely"


def test_transfer_encoding_chunked_case_insensitive(router):
    with Conn(router) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n" +
               chunked(b"lower-case name"))
        assert c.response().json()["body"] == "lower-case name"


def test_chunked_read_n_across_chunk_boundaries(router):
    r = post_chunked(router, chunked(b"abcdefghij", 4), "/inputs?mode=read_n&n=3")
    assert r.json()["pieces"] == ["abc", "def", "ghi", "j", "", ""]


def test_chunked_response_framing(router):
    with Conn(router) as c:
        c.send(build_request("GET", "/stream?n=4", host="x"))
        r = c.response()
    assert r.chunked and r.header("Transfer-Encoding") == "chunked"
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
    assert not r.trailers


def test_empty_chunks_from_app_do_not_end_the_response(router):
    # A b"" from the app must not be written as a zero-size chunk (that would
    # be the last-chunk marker and cut the body short).
    with Conn(router) as c:
        c.send(build_request("GET", "/stream?n=3&empty=1", host="x") +
               build_request("GET", "/hello-list", host="x"))
        r = c.response()
        assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"
        assert c.response().body == b"Hello, world!\n"


def test_chunked_response_then_keep_alive(router):
    with Conn(router) as c:
        for i in range(3):
            assert c.request("GET", "/stream?n=2").body == b"chunk 0\nchunk 1\n"


def test_large_chunked_response(router):
    r = fetch(router, "/big?mib=3&chunked=1", timeout=30)
    assert r.chunked and len(r.body) == 3 << 20
