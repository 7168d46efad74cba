"""Per-interpreter request and connection counters, readable from outside.

Each worker interpreter bumps its own slots in a shared file mapping named by
$BENCH_COUNTS (slot = interpreter id), so the benchmark reads exact per-worker
counts without asking the server (a probe request would land on whichever
worker the kernel picks). One writer per slot: no locking needed.
Layout: 8-byte unsigned ints; [2*i] = requests, [2*i+1] = connections
(distinct client ports) of interpreter i. Ids >= SLOTS wrap.
Without $BENCH_COUNTS, count() does nothing.
"""

import _interpreters
import mmap
import os

SLOTS = 64

_path = os.environ.get("BENCH_COUNTS")
if _path:
    _id = _interpreters.get_current()[0] % SLOTS
    _fd = os.open(_path, os.O_RDWR)
    _map = mmap.mmap(_fd, SLOTS * 16)
    os.close(_fd)
    _counts = memoryview(_map).cast("Q")
    _ports = set()

    def count(environ):
        _counts[2 * _id] += 1
        port = environ.get("REMOTE_PORT")
        if port not in _ports:
            _ports.add(port)
            _counts[2 * _id + 1] = len(_ports)
else:
    def count(environ):
        pass
