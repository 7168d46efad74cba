"""Serves ?path=FILE through environ["wsgi.file_wrapper"] (block size ?blk=, 65536).

app: validator-checked (the server iterates the wrapper, as any iterable).
sendfile_app: the wrapper object reaches the server as is (see keep_body), so the
  server can use sendfile.
bytesio_app: a file-like object with no fileno() (io.BytesIO of ?size= bytes).
kinds_app: the wrapper as is, over the objects _serve_kind lists (?kind=).
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


class Flaky(io.RawIOBase):
    """?size= bytes, then read() raises; close() appends "closed" to ?log=."""

    def __init__(self, size, log):
        self.left, self.log = size, log

    def readable(self):
        return True

    def read(self, n=-1):
        if self.left <= 0:
            raise OSError("the disk went away")
        n = min(n, self.left)
        self.left -= n
        return b"x" * n

    def close(self):
        if not self.closed and self.log:
            append_line(self.log, "closed")
        super().close()


class ReadOnly:
    """A file-like object with read() alone: no fileno(), no close()."""

    def __init__(self, data):
        self.f = io.BytesIO(data)

    def read(self, n):
        return self.f.read(n)


def _serve_kind(environ, start_response):
    """?kind= offset (a file read from ?offset= on), bytesio, pipe (?size=
    bytes through a pipe), readonly (no fileno, no close), flaky (read() raises
    after ?size= bytes), blksize0."""
    q = query(environ)
    kind, size = q["kind"], int(q.get("size", "100000"))
    data = bytes(i % 251 for i in range(size))
    wrap = environ["wsgi.file_wrapper"]
    length = size
    if kind == "offset":
        f = open(q["path"], "rb")
        f.seek(int(q["offset"]))
        length = os.path.getsize(q["path"]) - int(q["offset"])
        body = wrap(f)
    elif kind == "bytesio":
        body = wrap(io.BytesIO(data), 8192)
    elif kind == "pipe":
        r, w = os.pipe()
        os.write(w, data)  # under the pipe's 64 KiB
        os.close(w)
        body = wrap(os.fdopen(r, "rb"), 4096)
    elif kind == "readonly":
        body = wrap(ReadOnly(data), 10000)
    elif kind == "flaky":
        body = wrap(Flaky(size, q.get("log")), 8192)
        length = size * 2
    elif kind == "blksize0":
        body = wrap(io.BytesIO(data), 0)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(length))])
    return body


app = checked(_serve_file)
kinds_app = keep_body(_serve_kind)
sendfile_app = keep_body(_serve_file)
bytesio_app = checked(_serve_bytesio)
