"""App for the repro scripts in this folder.

GET /?sleep=S    sleeps S seconds, answers "ok"
GET /?pi=N       computes N digits of pi (pure Python, ~40 ms for 1000) and
                 answers "<interpreter id> <how many requests in a row this
                 interpreter has served on this same connection>"
"""

import _interpreters
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apps"))
from cpu import pi_digits  # noqa: E402

_last = [None, 0]


def app(environ, start_response):
    qs = environ.get("QUERY_STRING", "")
    if qs.startswith("sleep="):
        time.sleep(float(qs[6:]))
        body = b"ok"
    elif qs.startswith("pi="):
        port = environ.get("REMOTE_PORT")
        _last[1] = _last[1] + 1 if port == _last[0] else 1
        _last[0] = port
        pi_digits(int(qs[3:]))
        body = f"{_interpreters.get_current()[0]} {_last[1]}".encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
