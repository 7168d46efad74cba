"""Who served a request: process, interpreter, thread, gorgon's mode."""
import os
import threading


def who():
    import _interpreters

    import gorgon
    return {"pid": os.getpid(), "interp": _interpreters.get_current()[0],
            "tid": threading.get_native_id(), "mode": gorgon.mode}
