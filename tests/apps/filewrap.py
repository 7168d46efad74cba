"""Serves ?path=FILE through environ["wsgi.file_wrapper"] (block size ?blk=, 65536).

app: validator-checked (the server iterates the wrapper, as any iterable).
sendfile_app: the wrapper object reaches the server as is (see keep_body), so the
  server can use sendfile.
bytesio_app: a file-like object with no fileno() (io.BytesIO of ?size= bytes).
?log=PATH: the file object's close() appends "closed" to PATH.
"""
import io
import os

from _wsgicheck import append_line, checked, keep_body, query


class LoggingFile(io.FileIO):
    log = None

    def close(self):
        if not self.closed and self.log:
            append_line(self.log, "closed")
        super().close()


def _serve_file(environ, start_response):
    q = query(environ)
    path = q["path"]
    blk = int(q.get("blk", "65536"))
    size = os.path.getsize(path)
    f = io.BufferedReader(LoggingFile(path, "rb"))
    f.raw.log = q.get("log")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](f, blk)


def _serve_bytesio(environ, start_response):
    size = int(query(environ).get("size", "100000"))
    data = bytes(i % 251 for i in range(size))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](io.BytesIO(data), 8192)


app = checked(_serve_file)
sendfile_app = keep_body(_serve_file)
bytesio_app = checked(_serve_bytesio)
