"""Routes on the first path segment to the reference apps, so that one shared
server can serve many tests. The router itself does nothing to the request or
the response: each target is a validator-checked app (or keep_body() for the
ones whose body type matters), and the PATH_INFO it sees still has the prefix.
"""
import big
import closelog
import counter
import cpu
import echo
import excinfo
import filewrap
import hello
import inputs
import raises
import raises_iter
import slow
import streaming
import writer
from _wsgicheck import checked, text_response

ROUTES = {
    "": hello.app,
    "hello": hello.app,
    "hello-list": hello.list_app,
    "hello-tuple": hello.tuple_app,
    "status": hello.status_app,
    "server-header": hello.server_header_app,
    "close": hello.close_app,
    "echo": echo.app,
    "stream": streaming.app,
    "stream-tiny": streaming.tiny_app,
    "slow": slow.app,
    "cpu": cpu.app,
    "meet": cpu.meet_app,
    "counter": counter.app,
    "raises": raises.app,
    "raises-iter": raises_iter.app,
    "excinfo": excinfo.app,
    "writer": writer.app,
    "closelog": closelog.app,
    "file": filewrap.app,
    "file-sendfile": filewrap.sendfile_app,
    "file-bytesio": filewrap.bytesio_app,
    "file-kind": filewrap.kinds_app,
    "big": big.app,
    "inputs": inputs.app,
}

_not_found = checked(lambda environ, start_response: text_response(
    start_response, "no such route\n", "404 Not Found"))


def _asterisk(environ, start_response):
    """OPTIONS *: not wrapped in the validator, which wants PATH_INFO to start
    with "/" (an asterisk-form target has no path to give)."""
    body = ("%s %s %s" % (environ["REQUEST_METHOD"], environ["PATH_INFO"],
                          environ["RAW_URI"])).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "*":
        return _asterisk(environ, start_response)
    segment = path.split("/", 2)[1]
    return ROUTES.get(segment, _not_found)(environ, start_response)
