"""Raises GorgonTestError while the server iterates the body.

Query: at=K (raise when asked for chunk K; 0 = before the first body byte,
default 1), log=PATH (close() appends "closed" to PATH).
"""
from _wsgicheck import append_line, checked, query


class GorgonTestError(Exception):
    pass


class Body:
    def __init__(self, at, log):
        self.at = at
        self.log = log

    def __iter__(self):
        for i in range(5):
            if i == self.at:
                raise GorgonTestError("boom-in-iteration-at-%d" % i)
            yield b"part %d\n" % i

    def close(self):
        if self.log:
            append_line(self.log, "closed")


def _raises_iter(environ, start_response):
    q = query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(int(q.get("at", "1")), q.get("log"))


app = checked(_raises_iter)
