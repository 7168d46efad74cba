"""An app whose import misbehaves in a sub-interpreter only, as a broken C
extension might: GORGON_TEST_PROBE=hang sleeps forever, =crash segfaults,
=raise raises an ordinary exception, =exit leaves the process with status 3.
In a main interpreter (modes processes and threads) it imports normally."""
import os
import time

import gorgon

if gorgon.mode == "interpreters":
    what = os.environ.get("GORGON_TEST_PROBE", "")
    if what == "hang":
        while True:
            time.sleep(1)
    elif what == "crash":
        import ctypes
        ctypes.string_at(0)
    elif what == "raise":
        raise RuntimeError("this app only fails in a sub-interpreter")
    elif what == "exit":
        os._exit(3)

from modes import app  # noqa: E402,F401
