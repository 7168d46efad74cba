"""A body whose close() appends "closed" to ?log=PATH.

Query: n=chunks (3), size=bytes per chunk (10), delay=seconds between chunks (0).
"""
import time

from _wsgicheck import append_line, checked, query


class Body:
    def __init__(self, log, n, size, delay):
        self.log, self.n, self.size, self.delay = log, n, size, delay

    def __iter__(self):
        for i in range(self.n):
            if i and self.delay:
                time.sleep(self.delay)
            yield b"x" * self.size

    def close(self):
        append_line(self.log, "closed")


def _closelog(environ, start_response):
    q = query(environ)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Body(q["log"], int(q.get("n", "3")), int(q.get("size", "10")),
                float(q.get("delay", "0")))


app = checked(_closelog)
