"""Helpers shared by the reference apps (stdlib only).

Every app object the tests serve goes through wsgiref.validate.validator, so
each request is checked for PEP 3333 compliance; the e2e fixtures fail a test
when "AssertionError" or "WSGIWarning" shows up in the server's log.
"""
import json
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

__all__ = ["checked", "keep_body", "query", "interp_id", "native_tid",
           "text_response", "json_response", "raw_input", "append_line"]


def checked(app):
    """The app wrapped in wsgiref.validate.validator."""
    return validator(app)


def keep_body(app):
    """Like checked(), but the body object the app returned reaches the server as is.

    validator() wraps every body in its own IteratorWrapper, which hides what the
    server must recognise: a list/tuple body (the server computes Content-Length)
    and the server's own wsgi.file_wrapper (the server uses sendfile). Here
    validator() still checks environ, start_response, status, headers, write() and
    that start_response was called before the body; the real body is handed over
    untouched, and a list/tuple body is checked to hold only bytes.
    """
    def wrapped(environ, start_response):
        box = []

        def inner(env, sr):
            box.append(app(env, sr))
            return [b""]

        it = validator(inner)(environ, start_response)
        try:
            for _ in it:
                pass
        finally:
            it.close()
        body = box[0]
        if isinstance(body, (list, tuple)):
            for item in body:
                assert type(item) is bytes, "body item is not bytes: %r" % (item,)
        return body

    return wrapped


def query(environ):
    """QUERY_STRING as a dict of first values."""
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                         keep_blank_values=True).items()}


def interp_id():
    import _interpreters
    return _interpreters.get_current()[0]


def native_tid():
    return threading.get_native_id()


def spin_cpu(ms):
    """Busy-loop for ms milliseconds of this thread's CPU time (also used by the
    ASGI test app): (loops done, CPU seconds used)."""
    c0 = time.thread_time()
    x = 0
    while time.thread_time() - c0 < ms / 1000.0:
        for _ in range(1000):
            x += 1
    return x, time.thread_time() - c0


def meet(key, n, timeout):
    """Count this request in under gorgon.shared[key], then wait without ever
    letting go of the GIL until n requests have counted themselves in: the
    switch interval is raised above the timeout, and gorgon.shared calls and
    time.monotonic() do not release the GIL. With one GIL shared between the
    workers, no other request can run (or even start) meanwhile, so every
    waiter but the last gives up at the timeout; with a GIL per interpreter
    they all meet. Returns (met, seconds waited)."""
    import sys
    import gorgon
    old = sys.getswitchinterval()
    sys.setswitchinterval(timeout * 4)
    try:
        t0 = time.monotonic()
        deadline = t0 + timeout
        gorgon.shared.incr(key)
        met = False
        while time.monotonic() < deadline:
            if gorgon.shared.get(key) >= n:
                met = True
                break
        return met, time.monotonic() - t0
    finally:
        sys.setswitchinterval(old)


def text_response(start_response, body, status="200 OK", ctype="text/plain",
                  headers=()):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", ctype),
                            ("Content-Length", str(len(body)))] + list(headers))
    return [body]


def json_response(start_response, obj, status="200 OK", headers=()):
    data = json.dumps(obj, default=repr).encode()
    return text_response(start_response, data, status, "application/json", headers)


def raw_input(environ):
    """The server's own wsgi.input object, under validator()'s InputWrapper.

    InputWrapper.read() insists on exactly one argument; read() with no argument
    (allowed by the gorgon spec) has to be called on the server's object.
    """
    inp = environ["wsgi.input"]
    return getattr(inp, "input", inp)


def append_line(path, line):
    """Append one line to a file (cross-interpreter way to report events)."""
    with open(path, "a") as f:
        f.write(line + "\n")
