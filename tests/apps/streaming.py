"""Generator body without Content-Length (-> chunked).

Query: n=chunks (3), delay=seconds between chunks (0), empty=1 (yield b"" before
each chunk), gate=PATH (before the second chunk wait up to 10 s for PATH to
exist; yields b"GATE-TIMEOUT\\n" if it never appears).

tiny_app: ?big= bytes in one piece, then ?n= pieces of 6 bytes ("%05d\\n"), chunked.
"""
import os
import time

from _wsgicheck import checked, query


def _stream(environ, start_response):
    q = query(environ)
    n = int(q.get("n", "3"))
    delay = float(q.get("delay", "0"))
    empty = q.get("empty") == "1"
    gate = q.get("gate")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(n):
            if i == 1 and gate:
                deadline = time.monotonic() + 10
                while not os.path.exists(gate) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not os.path.exists(gate):
                    yield b"GATE-TIMEOUT\n"
            elif i and delay:
                time.sleep(delay)
            if empty:
                yield b""
            yield b"chunk %d\n" % i

    return gen()


def _tiny(environ, start_response):
    q = query(environ)
    big, n = int(q["big"]), int(q["n"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"b" * big
    for i in range(n):
        yield b"%05d\n" % i


app = checked(_stream)
tiny_app = checked(_tiny)
