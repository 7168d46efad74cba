"""HTTP/1.1 basics: framing of responses, Date/Server, HEAD, HTTP/1.0,
Connection: close both ways, 204/304, Expect: 100-continue."""
import email.utils
import re
import time

import pytest

from conftest import Conn, build_request, fetch, host_header, utcnow

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                         r"\d\d:\d\d:\d\d GMT")


def test_hello(router):
    r = fetch(router, "/hello")
    assert r.status == 200
    assert r.version == "HTTP/1.1"
    assert r.body == b"Hello, world!\n"
    assert r.header("Content-Type") == "text/plain"


def test_date_and_server_headers(router):
    r = fetch(router, "/hello")
    date = r.header("Date")
    assert date and IMF_FIXDATE.fullmatch(date), r.headers
    assert abs((utcnow() - email.utils.parsedate_to_datetime(date)).total_seconds()) < 60
    assert r.header("Server") and re.fullmatch(r"gorgon(/\S+)?", r.header("Server")), r.headers


def test_error_responses_have_date_and_server(router):
    r = fetch(router, "/nowhere")
    assert r.status == 404
    assert r.header("Date") and r.header("Server")
    with Conn(router) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Space : 1\r\n\r\n")
        r = c.response()
    assert r.status == 400
    assert r.header("Date") and r.header("Server"), r.headers


def test_app_may_override_server_header(router):
    r = fetch(router, "/server-header")
    assert r.headers_all("Server") == ["custom/1.0"], r.headers


@pytest.mark.parametrize("route", ["/hello-list", "/hello-tuple"])
def test_list_body_gets_content_length(router, route):
    r = fetch(router, route)
    assert r.header("Content-Length") == "14", r.headers
    assert r.header("Transfer-Encoding") is None
    assert r.body == b"Hello, world!\n"


def test_iterable_body_without_length_is_chunked(router):
    r = fetch(router, "/stream?n=3")
    assert r.chunked and r.header("Content-Length") is None, r.headers
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_app_content_length_is_used(router):
    r = fetch(router, "/echo")
    assert not r.chunked
    assert int(r.header("Content-Length")) == len(r.body) > 0


@pytest.mark.parametrize("route", ["/hello-list", "/stream?n=3", "/echo", "/big?mib=2"])
def test_head_sends_no_body(router, route):
    # HEAD then GET pipelined: the second status line must follow the first
    # head immediately, so any body bytes after the HEAD response would show.
    with Conn(router) as c:
        c.send(build_request("HEAD", route, host=host_header(router)) +
               build_request("GET", "/hello-list", host=host_header(router)))
        head = c.read_response("HEAD")
        assert head.status == 200
        get = c.response()
        assert get.status == 200 and get.body == b"Hello, world!\n", get


def test_head_keeps_content_length(router):
    with Conn(router) as c:
        r = c.request("HEAD", "/hello-list")
    assert r.header("Content-Length") == "14"


def test_http10_closes_after_response(router):
    with Conn(router) as c:
        r = c.request("GET", "/hello-list", version="HTTP/1.0", host=False)
        assert r.status == 200 and r.body == b"Hello, world!\n"
        assert c.closed_within(3), "HTTP/1.0 connection left open"


def test_http10_streaming_not_chunked(router):
    with Conn(router) as c:
        c.send(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        r = c.response()
    assert r.header("Transfer-Encoding") is None, "chunked sent to an HTTP/1.0 client"
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_http10_keep_alive_requested(router):
    with Conn(router) as c:
        for _ in range(3):
            r = c.request("GET", "/hello-list", version="HTTP/1.0", host=False,
                          headers=[("Connection", "keep-alive")])
            assert r.status == 200 and r.body == b"Hello, world!\n"
            assert r.has_token("Connection", "keep-alive"), \
                "HTTP/1.0 keep-alive needs Connection: keep-alive in the response: %r" % r.headers
        assert not c.closed_within(0.3)


def test_request_connection_close(router):
    with Conn(router) as c:
        r = c.request("GET", "/hello", headers=[("Connection", "close")])
        assert r.status == 200
        assert r.has_token("Connection", "close"), r.headers
        assert c.closed_within(3), "server kept the connection after Connection: close"


def test_app_connection_close(router):
    with Conn(router) as c:
        r = c.request("GET", "/close")
        assert r.body == b"closing after this"
        assert r.has_token("Connection", "close")
        assert c.closed_within(3), "app said Connection: close; server kept the connection"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(router, code):
    with Conn(router) as c:
        c.send(build_request("GET", "/status?code=%d" % code, host=host_header(router)) +
               build_request("GET", "/hello-list", host=host_header(router)))
        r = c.read_response()
        assert r.status == code
        assert r.header("Transfer-Encoding") is None, r.headers
        assert r.header("Content-Length") in (None, "0"), r.headers
        nxt = c.response()
        assert nxt.status == 200 and nxt.body == b"Hello, world!\n", nxt


def test_uncommon_status_passed_through(router):
    r = fetch(router, "/status?code=418")
    assert r.status == 418 and r.body == b"status 418"


def test_expect_100_continue(router):
    with Conn(router) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response(timeout=5)
        assert interim.status == 100, interim
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw_head
        c.send(b"hello")
        r = c.response()
        assert r.status == 200 and r.json()["body"] == "hello"


def test_expect_100_continue_chunked(router):
    with Conn(router) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Expect: 100-continue\r\n\r\n")
        assert c.read_response(timeout=5).status == 100
        c.send(b"5\r\nhello\r\n0\r\n\r\n")
        r = c.response()
        assert r.json()["body"] == "hello"


def test_no_100_continue_without_expect(router):
    with Conn(router) as c:
        r = c.request("POST", "/echo", body=b"abc")
        assert r.interim == [] and r.status == 200


def test_methods_reach_the_app(router):
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = fetch(router, "/echo", method, body=b"x")
        assert r.json()["environ"]["REQUEST_METHOD"] == method


def test_request_head_sent_byte_by_byte(router):
    with Conn(router) as c:
        c.send_slowly(build_request("POST", "/echo?a=1", [("X-Slow", "yes")], b"body!",
                                    host="x"))
        r = c.response()
    j = r.json()
    assert j["body"] == "body!" and j["environ"]["HTTP_X_SLOW"] == "yes"


def test_many_requests_fresh_connections(router):
    t0 = time.monotonic()
    for i in range(50):
        assert fetch(router, "/hello").status == 200
    assert time.monotonic() - t0 < 20
