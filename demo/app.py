"""The bundled demo: `make serve`, then open http://127.0.0.1:8000/."""

import _interpreters
import threading


def app(environ, start_response):
    interp = _interpreters.get_current()[0]
    body = (
        f"Hello from gorgon!\n"
        f"path: {environ['PATH_INFO']}\n"
        f"worker: {environ.get('gorgon.worker_id')}, sub-interpreter {interp}, "
        f"thread {threading.get_native_id()}\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
