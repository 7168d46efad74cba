"""A WSGI app that breaks PEP 3333 (tests/apps/wsgi_misuse.py): each refused
call raises a clear exception in the app, which may catch it and answer after;
uncaught, it is a 500 (or, once part of the body is out, a cut connection),
one error entry in the log, close() called exactly once, and the worker
serving on."""
import pytest

from conftest import Conn, build_request, fetch, one_error_entry, scaled

APP = "wsgi_misuse:app"

# Refused by start_response: the app may catch it and start again.
REFUSED_START = {
    "status-int": ("ValueError", "invalid WSGI status 200: expected '200 OK'"),
    "status-bytes": ("ValueError", "invalid WSGI status b'200 OK': expected '200 OK'"),
    "status-short": ("ValueError", "invalid WSGI status '200': expected '200 OK'"),
    "status-no-space": ("ValueError", "invalid WSGI status '200OK': expected '200 OK'"),
    "status-letters": ("ValueError", "invalid WSGI status '2x0 OK'"),
    "status-low": ("ValueError", "invalid WSGI status '099 Low'"),
    "status-crlf": ("ValueError", "invalid WSGI status '200 OK\\r\\nX-Injected: 1': expected '200 OK'"),
    "status-not-latin1": ("ValueError", "invalid WSGI status '200 \u2713': expected '200 OK'"),
    "headers-tuple": ("TypeError", "WSGI headers must be a list, not tuple"),
    "header-list": ("TypeError", "WSGI header ['X-A', 'b'] is not a (name, value) tuple"),
    "header-triple": ("TypeError", "WSGI header ('X-A', 'b', 'c') is not a (name, value) tuple"),
    "header-bytes": ("ValueError", "invalid WSGI header (b'X-A', b'b')"),
    "header-name-space": ("ValueError", "invalid WSGI header ('X A', 'b')"),
    "header-name-colon": ("ValueError", "invalid WSGI header ('X:A', 'b')"),
    "header-name-empty": ("ValueError", "invalid WSGI header ('', 'b')"),
    "header-crlf": ("ValueError", "invalid WSGI header ('X-A', 'b\\r\\nX-Injected: 1')"),
    "header-nul": ("ValueError", "invalid WSGI header ('X-A', 'b\\x00')"),
    "content-length-letters": ("ValueError", "invalid Content-Length 12x"),
    "content-length-huge": ("ValueError", "invalid Content-Length " + "9" * 20),
    "close-then-bad-header": ("ValueError", "invalid WSGI header ('X A', 'b')"),
    "write-before-start": ("RuntimeError", "write() before start_response"),
    "start-one-argument": ("TypeError", "start_response() missing required argument 'headers' (pos 2)"),
}

# Nothing sent yet: a 500.
BEFORE_HEAD = {
    **REFUSED_START,
    "no-start": ("RuntimeError", "the application returned without calling start_response"),
    "start-twice": ("RuntimeError", "start_response called a second time without exc_info"),
    "no-start-body": ("RuntimeError", "the application yielded body bytes before start_response"),
    "yield-before-start": ("RuntimeError", "the application yielded body bytes before start_response"),
    "write-str": ("TypeError", "write() takes bytes, not str"),
    "returns-none": ("TypeError", "'NoneType' object is not iterable"),
    "body-str": ("TypeError", "WSGI body items must be bytes, not str"),
    "iter-raises-first": ("ValueError", "no body for you"),
    "file-wrapper-no-file": ("TypeError", "FileWrapper() missing required argument 'filelike' (pos 1)"),
}

# Part of the body sent: the connection is cut after it.
AFTER_HEAD = {
    "iter-raises-later": ("ValueError", "later", b"partial "),
    "body-str-later": ("TypeError", "WSGI body items must be bytes, not str", b"partial "),
    "body-int": ("TypeError", "WSGI body items must be bytes, not int", b"a"),
    "exc-info-not-a-tuple": ("TypeError", "exc_info must be a (type, value, traceback) tuple of an exception, "
                             "not 'not a tuple'", b"partial "),
    "exc-info-not-an-exception": ("TypeError", "exc_info must be a (type, value, traceback) tuple of an "
                                  "exception, not (<class 'str'>, 'not an exception', None)", b"partial "),
    "exc-info-empty": ("TypeError", "exc_info must be a (type, value, traceback) tuple of an exception, "
                       "not (None, None, None)", b"partial "),
}

# The response was complete when close() called them: logged, nothing written.
AFTER_END = {
    "write-after-end": ("RuntimeError", "write() after the response ended"),
    "start-after-end": ("RuntimeError", "start_response called after the response ended"),
}

COUNTS_CLOSE = {"iter-raises-first", "iter-raises-later", "body-str-later", "write-after-end", "start-after-end"}


@pytest.fixture
def srv(shared_server):
    return shared_server(APP, "--workers", "1")


def error_logged(srv, offset, exc, text, heading="Error handling request"):
    one_error_entry(srv, offset, heading, "%s: %s" % (exc, text))


def closes(srv, case):
    return int(fetch(srv, "/closes?" + case).body)


@pytest.mark.parametrize("case", sorted(BEFORE_HEAD))
def test_refused_before_the_head_is_500(srv, case):
    exc, text = BEFORE_HEAD[case]
    offset = len(srv.stderr_bytes())
    before = closes(srv, case)
    with Conn(srv) as c:
        r = c.request("GET", "/" + case)
        assert r.status == 500 and r.body == b"Internal Server Error\n", r
        assert c.request("GET", "/closes?" + case).status == 200, "the connection did not go on after the 500"
    error_logged(srv, offset, exc, text)
    if case in COUNTS_CLOSE:
        assert closes(srv, case) == before + 1


@pytest.mark.parametrize("case", sorted(REFUSED_START))
def test_refused_start_response_can_be_caught_and_leaves_the_response_as_it_was(srv, case):
    exc, text = REFUSED_START[case]
    with Conn(srv) as c:
        r = c.request("GET", "/%s?catch=1" % case)
        assert r.status == 200 and r.body.decode() == "caught %s: %s" % (exc, text), r.body
        # A Connection: close in the refused headers did not stick.
        assert not r.has_token("connection", "close"), r
        assert c.request("GET", "/closes?x").status == 200


@pytest.mark.parametrize("case", sorted(AFTER_HEAD))
def test_refused_after_the_head_cuts_the_response(srv, case):
    exc, text, partial = AFTER_HEAD[case]
    offset = len(srv.stderr_bytes())
    before = closes(srv, case)
    with Conn(srv) as c:
        c.send(build_request("GET", "/" + case))
        r = c.response(allow_truncated=True)
        assert r.status == 200 and r.truncated and r.body == partial, r
        assert c.closed_within(scaled(3)), "connection left open after the app failed mid-response"
    error_logged(srv, offset, exc, text)
    if case in COUNTS_CLOSE:
        assert closes(srv, case) == before + 1
    assert fetch(srv, "/closes?x").status == 200


@pytest.mark.parametrize("case", sorted(AFTER_END))
def test_calls_from_close_after_the_end_raise_and_write_nothing(srv, case):
    exc, text = AFTER_END[case]
    offset = len(srv.stderr_bytes())
    before = closes(srv, case)
    with Conn(srv) as c:
        r = c.request("GET", "/" + case)
        assert r.status == 200 and r.body == b"complete\n", r
        # Nothing after the response's end: the next response on the connection is intact.
        r = c.request("GET", "/closes?" + case)
        assert r.status == 200 and int(r.body) == before + 1, r
        assert c.poll_data(0.2) is None, "bytes after the response"
    error_logged(srv, offset, exc, text, "Error closing the response of")


def test_wsgi_input_methods_and_refusals(srv):
    with Conn(srv) as c:
        r = c.request("POST", "/input-api", body=b"abcdef\nsecond line\nthird")
        assert r.status == 200, r
        assert r.body.decode().splitlines() == [
            "(True, False, False)", "b'abc'", "b'def\\n'",
            "TypeError: an integer is required",
            "TypeError: expected at most one argument",
            "TypeError: an integer is required",
            "TypeError: an integer is required",
            "None", "b'second line\\nthird'"], r.body


def test_wsgi_input_read_after_the_end_is_empty(srv):
    """wsgi.input kept past the response reads empty in a later request: not
    freed memory, not that request's body. (Inside close() it still reads.)"""
    with Conn(srv) as c:
        r = c.request("POST", "/input-after-end", body=b"the first body\n" * 100)
        assert r.status == 200 and r.body == b"complete\n", r
        r = c.request("POST", "/input-after-end-result", body=b"the second body\n")
        assert r.body == b"(b'the f', b'', b'', [], [])", r.body
