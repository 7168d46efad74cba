"""An application that grows with every request (a leak, as apps have):
each request keeps ~120 KB of small objects. Answers
"grows <pid> <interpreter id> <worker_id>"."""
import os

import gorgon
from _wsgicheck import checked, interp_id

KEPT = []


def _app(environ, start_response):
    KEPT.append([str(i) * 3 for i in range(2000)])
    body = ("grows %d %d %s" % (os.getpid(), interp_id(), gorgon.worker_id)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = checked(_app)
