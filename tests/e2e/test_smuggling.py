"""Strict parsing: each request-smuggling vector gets 400 + Connection: close,
and the connection is closed (nothing after it is processed)."""
import pytest

from conftest import Conn, scaled

GET = b"GET /echo HTTP/1.1\r\nHost: x\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: x\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
# After each bad request comes a valid one: it must never be answered.
FOLLOW_UP = b"GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

CASES = {
    # Content-Length / Transfer-Encoding conflicts
    "cl-and-te": POST + b"Content-Length: 5\r\n" + CHUNKED + b"\r\n0\r\n\r\n",
    "te-and-cl": POST + CHUNKED + b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate-cl-same": POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "duplicate-cl-different": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list": POST + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-plus": POST + b"Content-Length: +5\r\n\r\nhello",
    "cl-minus": POST + b"Content-Length: -5\r\n\r\nhello",
    "cl-hex": POST + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-space-inside": POST + b"Content-Length: 5 5\r\n\r\nhello",
    "cl-exponent": POST + b"Content-Length: 5e0\r\n\r\nhello",
    "cl-empty": POST + b"Content-Length: \r\n\r\nhello",
    "cl-overflow": POST + b"Content-Length: 184467440737095516160000000000\r\n\r\nhello",
    "te-gzip": POST + b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    "te-identity": POST + b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "te-chunked-chunked": POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-gzip": POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-two-lines": POST + CHUNKED + CHUNKED + b"\r\n0\r\n\r\n",
    "te-xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-http10": b"POST /echo HTTP/1.0\r\nHost: x\r\n" + CHUNKED + b"\r\n0\r\n\r\n",
    # line endings
    "bare-lf-everywhere": b"GET /echo HTTP/1.1\nHost: x\n\n",
    "bare-lf-request-line": b"GET /echo HTTP/1.1\nHost: x\r\n\r\n",
    "bare-lf-header": GET + b"X-A: 1\nX-B: 2\r\n\r\n",
    "bare-lf-end-of-head": GET + b"X-A: 1\r\n\n",
    "bare-cr-header": GET + b"X-A: 1\rX-B: 2\r\n\r\n",
    "bare-cr-request-line": b"GET /echo HTTP/1.1\rHost: x\r\n\r\n",
    # header syntax
    "space-before-colon": GET + b"X-A : 1\r\n\r\n",
    "tab-before-colon": GET + b"X-A\t: 1\r\n\r\n",
    "space-before-colon-cl": POST + b"Content-Length : 5\r\n\r\nhello",
    "space-before-colon-te": POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": GET + b"X-A: 1\r\n continued\r\n\r\n",
    "obs-fold-tab": GET + b"X-A: 1\r\n\tcontinued\r\n\r\n",
    "first-header-folded": b"GET /echo HTTP/1.1\r\n Host: x\r\n\r\n",
    "nul-in-value": GET + b"X-A: a\x00b\r\n\r\n",
    "nul-in-name": GET + b"X-\x00A: 1\r\n\r\n",
    "ctl-in-value": GET + b"X-A: a\x01b\r\n\r\n",
    "del-in-value": GET + b"X-A: a\x7fb\r\n\r\n",
    "esc-in-value": GET + b"X-A: a\x1bb\r\n\r\n",
    "ctl-in-name": GET + b"X-\x1bA: 1\r\n\r\n",
    "empty-name": GET + b": 1\r\n\r\n",
    # chunk framing
    "chunk-size-plus": POST + CHUNKED + b"\r\n+5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-minus": POST + CHUNKED + b"\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-0x": POST + CHUNKED + b"\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-non-hex": POST + CHUNKED + b"\r\n5g\r\nhello\r\n0\r\n\r\n",
    "chunk-size-empty": POST + CHUNKED + b"\r\n\r\nhello\r\n0\r\n\r\n",
    "chunk-size-17-digits": POST + CHUNKED + b"\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": POST + CHUNKED + b"\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-missing-crlf": POST + CHUNKED + b"\r\n5\r\nhelloXX0\r\n\r\n",
    "chunk-data-longer-than-size": POST + CHUNKED + b"\r\n3\r\nhello\r\n0\r\n\r\n",
    "chunk-bare-lf-size-line": POST + CHUNKED + b"\r\n5\nhello\r\n0\r\n\r\n",
    # request line and Host
    "http11-no-host": b"GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rejected_with_400_and_closed(router, name):
    with Conn(router) as c:
        c.send(CASES[name] + FOLLOW_UP)
        r = c.response()
        assert r.status == 400, "%s: expected 400, got %r" % (name, r)
        assert r.has_token("Connection", "close"), r.headers
        closed = c.closed_within(scaled(3))
        extra = bytes(c.buf)
    assert not extra, "%s: more bytes after the 400 (a smuggled request answered?): %r" % (
        name, extra[:300])
    assert closed, "%s: connection left open after 400" % name


def test_unknown_coding_before_chunked_501_and_closed(router):
    # Well-formed, but a coding we do not implement (RFC 9110 15.6.2): 501,
    # and the connection is closed just as after a 400.
    with Conn(router) as c:
        c.send(POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + FOLLOW_UP)
        r = c.response()
        closed = c.closed_within(scaled(3))
        extra = bytes(c.buf)
    assert r.status == 501, r
    assert r.has_token("Connection", "close"), r.headers
    assert closed and not extra, extra[:300]


def test_http2_version_is_505(router):
    with Conn(router) as c:
        c.send(b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n")
        r = c.response()
    assert r.status == 505, r


GOOD = {
    "cl": POST + b"Content-Length: 5\r\n\r\nhello",
    "cl-leading-zeros": POST + b"Content-Length: 005\r\n\r\nhello",
    "cl-ows": POST + b"Content-Length:   5  \r\n\r\nhello",
    "te-chunked": POST + CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-ows": POST + b"Transfer-Encoding:  chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "tab-in-value": POST + b"X-A: a\tb\r\nContent-Length: 5\r\n\r\nhello",
    "obs-text-in-value": POST + b"X-A: caf\xe9\r\nContent-Length: 5\r\n\r\nhello",
    "http10-no-host": b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
    "16-hex-digits": POST + CHUNKED + b"\r\n0000000000000005\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_valid_edge_cases_accepted(router, name):
    with Conn(router) as c:
        c.send(GOOD[name])
        r = c.response()
    assert r.status == 200, "%s: %r" % (name, r)
    assert r.json()["body"] == "hello"
