"""Request targets as RFC 9112 section 3.2 has them, and the fields whose
duplicates or values the app must not be left to guess: absolute-form is
accepted (its authority replaces Host), every other malformed or unsupported
target gets its exact status and a closed connection, in both bridges."""
import pytest

from conftest import Conn, chunked, scaled

ASGI = ("asgi_app:app", "--workers", "1", "--keep-alive", "10")
ASGI_SMALL = ("asgi_app:app", "--workers", "1", "--limit-request-body", "1000")
# After each refused request comes a valid one: it must never be answered.
FOLLOW_UP = b"GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def asgi(shared_server):
    return shared_server(*ASGI)


@pytest.fixture(params=["wsgi", "asgi"])
def any_bridge(request, router, shared_server):
    return router if request.param == "wsgi" else shared_server(*ASGI)


def ask(srv, data):
    """Sends data, reads one response (the connection may stay open)."""
    with Conn(srv) as c:
        c.send(data)
        return c.response()


def exchange(srv, data):
    """Sends data, reads one response; returns (response, closed, extra bytes)."""
    with Conn(srv) as c:
        c.send(data)
        r = c.response()
        closed = c.closed_within(scaled(3))
        return r, closed, bytes(c.buf)


# ---- absolute-form: accepted, the authority replaces Host ------------------------

def test_wsgi_absolute_form(router):
    r = ask(router, b"GET http://example.com/echo/foo?q=1 HTTP/1.1\r\n"
                               b"Host: other.example\r\n\r\n")
    assert r.status == 200, r
    env = r.json()["environ"]
    assert env["PATH_INFO"] == "/echo/foo"
    assert env["QUERY_STRING"] == "q=1"
    assert env["RAW_URI"] == "http://example.com/echo/foo?q=1"
    assert env["HTTP_HOST"] == "example.com"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "80"


def test_wsgi_absolute_form_port_and_percent_path(router):
    r = ask(router, b"POST HTTPS://Example.COM:8443/echo/a%20b HTTP/1.1\r\n"
                               b"Host: other.example:1\r\nContent-Length: 2\r\n\r\nhi")
    assert r.status == 200, r
    j = r.json()
    env = j["environ"]
    assert env["PATH_INFO"] == "/echo/a b"
    assert env["QUERY_STRING"] == ""
    assert env["HTTP_HOST"] == "Example.COM:8443"
    assert env["SERVER_NAME"] == "Example.COM"
    assert env["SERVER_PORT"] == "8443"
    assert j["body"] == "hi"


def test_wsgi_absolute_form_http10_without_host(router):
    r = ask(router, b"GET http://example.com:81/echo HTTP/1.0\r\n\r\n")
    assert r.status == 200, r
    env = r.json()["environ"]
    assert env["PATH_INFO"] == "/echo"
    assert "HTTP_HOST" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "81")


def test_asgi_absolute_form(asgi):
    r = ask(asgi, b"GET http://example.com/scope/foo?q=1 HTTP/1.1\r\n"
                             b"Host: other.example\r\nX-A: b\r\n\r\n")
    assert r.status == 200, r
    s = r.json()
    assert s["path"] == "/scope/foo"
    assert s["raw_path"] == "/scope/foo"
    assert s["query_string"] == "q=1"
    assert s["headers"] == [["host", "example.com"], ["x-a", "b"]]
    # server is the socket's address, as the ASGI bridge always derives it.
    assert s["server"] == ["127.0.0.1", asgi.port]


def test_asgi_absolute_form_empty_path(asgi):
    r = ask(asgi, b"GET http://example.com:8080?x=1 HTTP/1.1\r\nHost: o\r\n\r\n")
    # "/" is not a route of the ASGI app: it answers 404, so look at the request
    # through /scope with a query instead.
    assert r.status == 404, r
    r = ask(asgi, b"OPTIONS http://example.com:8080/scope HTTP/1.1\r\nHost: o\r\n\r\n")
    assert r.status == 200, r
    s = r.json()
    assert s["method"] == "OPTIONS" and s["path"] == "/scope"
    assert s["headers"] == [["host", "example.com:8080"]]


def test_origin_form_keeps_host(router):
    # A "//" in an origin-form path is a path, not an authority.
    r = ask(router, b"GET /echo//example.com HTTP/1.1\r\nHost: h.example\r\n\r\n")
    env = r.json()["environ"]
    assert env["PATH_INFO"] == "/echo//example.com" and env["HTTP_HOST"] == "h.example"


# ---- asterisk-form: OPTIONS only ----------------------------------------------------

def test_wsgi_options_asterisk(router):
    r, closed, _ = exchange(router, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 200, r
    assert r.body == b"OPTIONS * *"


def test_asgi_options_asterisk(asgi):
    r = ask(asgi, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 200, r
    s = r.json()
    assert (s["method"], s["path"], s["raw_path"]) == ("OPTIONS", "*", "*")


# ---- refused, with the exact status, in both bridges -----------------------------

REFUSED = {
    "fragment": (400, b"GET /echo#frag HTTP/1.1\r\nHost: x\r\n\r\n"),
    "fragment-after-query": (400, b"GET /echo?x=1#y HTTP/1.1\r\nHost: x\r\n\r\n"),
    "fragment-absolute": (400, b"GET http://x/echo#y HTTP/1.1\r\nHost: x\r\n\r\n"),
    "no-leading-slash": (400, b"GET echo/bar HTTP/1.1\r\nHost: x\r\n\r\n"),
    "authority-form-get": (400, b"GET example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
    "asterisk-get": (400, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
    "absolute-userinfo": (400, b"GET http://u@x/echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    "absolute-empty-host": (400, b"GET http:///echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    "absolute-other-scheme": (400, b"GET ftp://x/echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    "connect": (501, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
    "connect-origin-form": (400, b"CONNECT /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    "content-type-twice": (400, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\nhi"),
    "te-gzip-chunked": (501, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
                             b"\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_status_and_closed(any_bridge, name):
    status, data = REFUSED[name]
    offset = len(any_bridge.stderr_bytes())
    r, closed, extra = exchange(any_bridge, data + FOLLOW_UP)
    assert r.status == status, "%s: expected %d, got %r" % (name, status, r)
    assert r.has_token("Connection", "close"), r.headers
    assert closed, "%s: connection left open" % name
    assert not extra, "%s: a request after it was answered: %r" % (name, extra[:300])
    log = any_bridge.stderr_bytes()[offset:].decode("utf-8", "replace")
    assert log.count("%d " % status) == 1, "one log line per refusal: %r" % log


# ---- a chunked body over the limit: 413 in both bridges --------------------------

@pytest.mark.parametrize("app", ["router:app", "asgi_app:app"])
def test_chunked_body_over_limit_413_and_closed(shared_server, app):
    srv = shared_server(app, "--workers", "1", "--limit-request-body", "1000")
    with Conn(srv) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
               chunked(b"y" * 5000, 500))
        r = c.response()
        closed = c.closed_within(scaled(3))
    assert r.status == 413, r
    assert r.has_token("Connection", "close"), r.headers
    assert closed


def test_asgi_malformed_chunk_after_start_400(asgi):
    # The app is already reading the body when the framing turns out bad.
    with Conn(asgi) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        c.send(b"zz\r\n")
        r = c.response()
        closed = c.closed_within(scaled(3))
    assert r.status == 400, r
    assert closed
