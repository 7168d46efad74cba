"""A big response: ?mib=N (default 20) blocks of PATTERN (1 MiB each).

With Content-Length unless ?chunked=1. The tests compute the same PATTERN.
?fresh=1: every block is a new bytes object (so a server that queues blocks
without bound shows it in its memory). ?progress=PATH: after each block is
handed over, PATH is rewritten with the number of blocks produced so far.
"""
from _wsgicheck import checked, query

PATTERN = bytes(range(256)) * 4096


def _big(environ, start_response):
    q = query(environ)
    n = int(q.get("mib", "20"))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("chunked") != "1":
        headers.append(("Content-Length", str(n * len(PATTERN))))
    start_response("200 OK", headers)

    fresh = q.get("fresh") == "1"
    progress = q.get("progress")

    def gen():
        for i in range(n):
            yield bytes(bytearray(PATTERN)) if fresh else PATTERN
            if progress:
                with open(progress, "w") as f:
                    f.write(str(i + 1))

    return gen()


app = checked(_big)
