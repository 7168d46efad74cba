"""A WSGI app that breaks PEP 3333 on purpose (test_wsgi_misuse.py).

GET /CASE runs CASES[CASE]. With ?catch=1 the app catches what start_response
or write() raised and answers 200 "caught TYPE: MESSAGE" itself (so the refused
call must have left the response as it was). The iterables it returns count
their close() calls per case: GET /closes?CASE answers the count.
"""
import sys

OK = ("200 OK", [("Content-Type", "text/plain")])
CLOSES = {}


class Body:
    """An iterable with close(), counting the calls; `items` may hold an
    exception to raise in its place."""

    def __init__(self, case, items):
        self.case, self.items = case, list(items)

    def __iter__(self):
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        CLOSES[self.case] = CLOSES.get(self.case, 0) + 1


def start_with(status, headers):
    return lambda env, sr: (sr(status, headers), [b"not reached"])[1]


def returns(items):
    def app(env, sr):
        sr(*OK)
        return items
    return app


def no_start(env, sr):
    return []


def no_start_body(env, sr):
    return [b"body without start_response"]


def yield_before_start(env, sr):
    yield b"too early"
    sr(*OK)


def start_twice(env, sr):
    sr(*OK)
    sr(*OK)  # raises: a second call needs exc_info
    return [b"not reached"]


def write_before_start(env, sr):
    sr.write(b"too early")
    return []


def write_str(env, sr):
    write = sr(*OK)
    write("text")
    return []


def write_after_end(env, sr):
    write = sr(*OK)

    class Late(Body):
        def close(self):
            super().close()
            write(b"after the end")  # raises: logged, the response is already complete
    return Late("write-after-end", [b"complete\n"])


def start_after_end(env, sr):
    sr(*OK)

    class Late(Body):
        def close(self):
            super().close()
            sr("500 Oops", [])
    return Late("start-after-end", [b"complete\n"])


def exc_info_not_a_tuple(env, sr):
    sr(*OK)
    yield b"partial "
    sr("500 Oops", [], "not a tuple")


def exc_info_not_an_exception(env, sr):
    sr(*OK)
    yield b"partial "
    sr("500 Oops", [], (str, "not an exception", None))


def exc_info_empty(env, sr):
    sr(*OK)
    yield b"partial "
    sr("500 Oops", [], sys.exc_info())  # (None, None, None): outside an except block


def input_api(env, sr):
    """wsgi.input's file-object methods and their refusals, as lines of text."""
    inp = env["wsgi.input"]
    out = [repr((inp.readable(), inp.writable(), inp.seekable())), repr(inp.read(3)), repr(inp.readline(None))]
    for call in (lambda: inp.read("x"), lambda: inp.read(1, 2), lambda: inp.readline("x"),
                 lambda: inp.readlines("x")):
        try:
            call()
            out.append("accepted")
        except TypeError as e:
            out.append("TypeError: %s" % e)
    out.append(repr(inp.close()))
    out.append(repr(inp.read()))  # close() is a no-op: the rest is still there
    sr(*OK)
    return [("\n".join(out) + "\n").encode()]


KEPT = {}


def input_after_end(env, sr):
    """Keeps wsgi.input past the response; in close() the body is still there."""
    KEPT["input"] = inp = env["wsgi.input"]
    sr(*OK)

    class Late(Body):
        def close(self):
            super().close()
            KEPT["in close"] = inp.read(5)
    return Late("input-after-end", [b"complete\n"])


def input_after_end_result(env, sr):
    """Reads the kept wsgi.input during the next request: empty, not freed
    memory and not this request's body."""
    inp = KEPT["input"]
    sr(*OK)
    return [repr((KEPT["in close"], inp.read(), inp.readline(), inp.readlines(), list(inp))).encode()]


def raising_body(case, items):
    def app(env, sr):
        sr(*OK)
        return Body(case, items)
    return app


CASES = {
    # refused before anything was sent: a 500
    "start-twice": start_twice,
    "status-int": start_with(200, []),
    "status-bytes": start_with(b"200 OK", []),
    "status-short": start_with("200", []),
    "status-no-space": start_with("200OK", []),
    "status-letters": start_with("2x0 OK", []),
    "status-low": start_with("099 Low", []),
    "status-crlf": start_with("200 OK\r\nX-Injected: 1", []),
    "status-not-latin1": start_with("200 \u2713", []),
    "headers-tuple": start_with("200 OK", ()),
    "header-list": start_with("200 OK", [["X-A", "b"]]),
    "header-triple": start_with("200 OK", [("X-A", "b", "c")]),
    "header-bytes": start_with("200 OK", [(b"X-A", b"b")]),
    "header-name-space": start_with("200 OK", [("X A", "b")]),
    "header-name-colon": start_with("200 OK", [("X:A", "b")]),
    "header-name-empty": start_with("200 OK", [("", "b")]),
    "header-crlf": start_with("200 OK", [("X-A", "b\r\nX-Injected: 1")]),
    "header-nul": start_with("200 OK", [("X-A", "b\0")]),
    "content-length-letters": start_with("200 OK", [("Content-Length", "12x")]),
    "content-length-huge": start_with("200 OK", [("Content-Length", "9" * 20)]),
    "close-then-bad-header": start_with("200 OK", [("Connection", "close"), ("X A", "b")]),
    "start-one-argument": lambda env, sr: (sr("200 OK"), [b"not reached"])[1],
    "file-wrapper-no-file": lambda env, sr: env["wsgi.file_wrapper"](),
    "no-start": no_start,
    "no-start-body": no_start_body,
    "yield-before-start": yield_before_start,
    "write-before-start": write_before_start,
    "write-str": write_str,
    "returns-none": returns(None),
    "body-str": returns(["text"]),
    "body-int": returns([b"a", 5]),
    "iter-raises-first": raising_body("iter-raises-first", [ValueError("no body for you")]),
    # refused after part of the body went out: the connection is cut
    "iter-raises-later": raising_body("iter-raises-later", [b"partial ", ValueError("later")]),
    "body-str-later": raising_body("body-str-later", [b"partial ", "text"]),
    "exc-info-not-a-tuple": exc_info_not_a_tuple,
    "exc-info-not-an-exception": exc_info_not_an_exception,
    "exc-info-empty": exc_info_empty,
    "input-api": input_api,
    "input-after-end": input_after_end,
    "input-after-end-result": input_after_end_result,
    # the response was complete: close() raising is logged
    "write-after-end": write_after_end,
    "start-after-end": start_after_end,
}


def app(environ, start_response):
    case = environ["PATH_INFO"].strip("/")
    if case == "closes":
        body = str(CLOSES.get(environ["QUERY_STRING"], 0)).encode()
        start_response(*OK)
        return [body]
    if environ["QUERY_STRING"] != "catch=1":
        return CASES[case](environ, start_response)
    try:
        return CASES[case](environ, start_response)
    except Exception as e:
        start_response(*OK)
        return [("caught %s: %s" % (type(e).__name__, e)).encode()]
