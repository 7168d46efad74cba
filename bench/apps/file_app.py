"""Serves ?path=FILE through wsgi.file_wrapper: sendfile in the clear, read
and encrypted over TLS (bench/tls_file.py)."""
import os


def app(environ, start_response):
    path = environ["QUERY_STRING"].partition("path=")[2]
    f = open(path, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.path.getsize(path)))])
    return environ["wsgi.file_wrapper"](f, 1 << 16)
