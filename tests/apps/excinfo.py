"""start_response with exc_info.

?mode=replace: start_response(200), then an error is caught and start_response
  is called again with exc_info before any byte was sent: the 500 replaces it.
?mode=after_headers: the first chunk is sent, then start_response(500, exc_info)
  must re-raise, so the response is cut short.
?mode=double: start_response called twice without exc_info (PEP 3333: an error).
"""
import sys

from _wsgicheck import checked, query


def _excinfo(environ, start_response):
    mode = query(environ).get("mode", "replace")
    if mode == "replace":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("handled-by-app")
        except ValueError:
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("X-Error", "handled")],
                           sys.exc_info())
        return [b"custom error page"]
    if mode == "double":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"should not get here"]

    def gen():
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial body"
        try:
            raise ValueError("late-error-after-headers")
        except ValueError:
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain")], sys.exc_info())
        yield b"should never be sent"

    return gen()


app = checked(_excinfo)
