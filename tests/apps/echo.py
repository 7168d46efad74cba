"""Echo: the request's environ, headers and body as JSON.

Query: noread=1 (do not touch wsgi.input), errors=TEXT (write TEXT to wsgi.errors).
"""
import hashlib
import os

from _wsgicheck import checked, interp_id, json_response, native_tid, query

_WSGI_KEYS = ("wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
              "wsgi.run_once", "wsgi.input_terminated")


def _echo(environ, start_response):
    q = query(environ)
    leaked = "gorgon.test.leak" in environ
    environ["gorgon.test.leak"] = True
    if "errors" in q:
        environ["wsgi.errors"].write(q["errors"] + "\n")
        environ["wsgi.errors"].flush()
    body = b""
    if q.get("noread") != "1":
        inp = environ["wsgi.input"]
        parts = []
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            parts.append(chunk)
        body = b"".join(parts)
    wsgi = {k: environ.get(k, "<missing>") for k in _WSGI_KEYS}
    wsgi["wsgi.version"] = list(environ["wsgi.version"]) if isinstance(
        environ.get("wsgi.version"), tuple) else repr(environ.get("wsgi.version"))
    wsgi["wsgi.file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    errors = environ["wsgi.errors"]
    wsgi["wsgi.errors"] = all(hasattr(errors, a) for a in ("write", "writelines", "flush"))
    out = {
        "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
        "wsgi": wsgi,
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body": body.decode("latin-1") if len(body) <= 1 << 20 else None,
        "leaked": leaked,
        "interp": interp_id(),
        "tid": native_tid(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
    }
    return json_response(start_response, out)


app = checked(_echo)
