"""A WSGI app for test_h2_file_wrapper.py, not wrapped in wsgiref.validate
(its iterable wrapper would hide wsgi.file_wrapper from the server).
/file?n=N answers N bytes of a regular file through wsgi.file_wrapper, with
X-Who (the interpreter id) and Content-Length; the file's close() adds 1
to gorgon.shared["closed"]; /closed answers that count; /hold?s=S answers
the interpreter id after S seconds."""
import io
import os
import tempfile
import time
from urllib.parse import parse_qs

import gorgon

DATA = bytes(range(256)) * 8192  # 2 MiB
PATH = os.path.join(tempfile.gettempdir(), "gorgon-h2files.bin")  # one for every run, made once
if not os.path.exists(PATH) or os.path.getsize(PATH) != len(DATA):
    with open("%s.%d" % (PATH, os.getpid()), "wb") as f:
        f.write(DATA)
    os.replace(f.name, PATH)


def who():
    import _interpreters
    return str(_interpreters.get_current()[0])


class Counted(io.FileIO):
    def close(self):
        if not self.closed:
            gorgon.shared.incr("closed")
        super().close()


def app(environ, start_response):
    path, query = environ["PATH_INFO"], parse_qs(environ["QUERY_STRING"])
    if path == "/file":
        n = int(query["n"][0])
        f = Counted(PATH, "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n)),
                                  ("X-Who", who())])
        return environ["wsgi.file_wrapper"](f)
    if path == "/hold":
        time.sleep(float(query["s"][0]))
        body = who().encode()
    elif path == "/closed":
        body = str(gorgon.shared.get("closed", 0)).encode()
    else:
        body = b"unknown path\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
