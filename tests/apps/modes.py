"""Who serves a request, for the execution-mode tests: process, interpreter,
thread and gorgon's worker facts; /crash takes the whole process down with a
segfault (a C extension's bug, as far as the server can tell)."""
import os
import threading

import gorgon
from _wsgicheck import checked, interp_id, json_response, query


def _crash():
    import ctypes
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/crash":
        _crash()
    if path == "/sleep":
        import time
        started = query(environ).get("started")
        if started:  # a file the test waits for: the request is in the app
            open(started, "w").close()
        time.sleep(float(query(environ).get("s", "0.2")))
    return json_response(start_response, {
        "pid": os.getpid(), "ppid": os.getppid(), "interp": interp_id(),
        "tid": threading.get_native_id(), "mode": gorgon.mode,
        "worker_id": gorgon.worker_id, "worker_count": gorgon.worker_count,
    })


app = checked(_app)
