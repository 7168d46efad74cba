"""Hello world, plus small variants used by the HTTP tests."""
from _wsgicheck import checked, keep_body, query

BODY = b"Hello, world!\n"


def _hello(environ, start_response):
    # A list body without Content-Length: under checked() the server sees an
    # opaque iterable (-> chunked); under keep_body() it sees the list itself.
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]


def _status(environ, start_response):
    """?code=N: answer with that status; 204 and 304 carry no body."""
    code = int(query(environ).get("code", "200"))
    reasons = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found",
               418: "I'm a teapot"}
    status = "%d %s" % (code, reasons.get(code, "Whatever"))
    if code in (204, 304):
        start_response(status, [("X-Code", str(code))])
        return []
    start_response(status, [("Content-Type", "text/plain")])
    return [b"status ", str(code).encode()]


def _server_header(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Server", "custom/1.0")])
    return [b"custom server header"]


def _close(environ, start_response):
    body = b"closing after this"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("Connection", "close")])
    return [body]


app = checked(_hello)
list_app = keep_body(_hello)
tuple_app = keep_body(lambda e, s: tuple(_hello(e, s)))
status_app = checked(_status)
server_header_app = checked(_server_header)
close_app = checked(_close)
