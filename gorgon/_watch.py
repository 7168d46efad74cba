"""--reload: watch the application's files and reload the server on change.

A process of its own, started by the server before it serves: the server
keeps no thread of its own for it (it forks worker processes only while it
has no thread), and never runs this code in a worker. On every change to a
watched file it drops that file's cached byte-code (a file rewritten within
the same second at the same size would otherwise be read from the stale
.pyc) and sends the server SIGHUP: the server's reload then imports the
application afresh in new workers, with no failed request.

watchfiles (inotify) is used when it is installed (pip install
'gorgon-server[reload]'); otherwise the files are polled twice a second.
It leaves with the server: the kernel sends it SIGTERM when the server
ends (PR_SET_PDEATHSIG), and it checks its parent besides.
"""

import argparse
import ctypes
import fnmatch
import importlib.util
import os
import signal
import sys
import threading
import time

POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1


def log(level, message):
    stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime())
    sys.stderr.write("[%s] [%d] [%s] %s\n" % (stamp, os.getpid(), level, message))
    sys.stderr.flush()


class Filter:
    """uvicorn's rules: a file is watched when its name matches an include
    pattern and neither its name nor any directory above it (under the
    watched directory) matches an exclude pattern."""

    def __init__(self, dirs, include, exclude):
        self.dirs = dirs
        self.include = include
        self.exclude = exclude

    def __call__(self, path):
        name = os.path.basename(path)
        if not any(fnmatch.fnmatch(name, p) for p in self.include):
            return False
        for d in self.dirs:
            if path.startswith(d + os.sep):
                parts = os.path.relpath(path, d).split(os.sep)
                return not any(fnmatch.fnmatch(part, p) for part in parts for p in self.exclude)
        return not any(fnmatch.fnmatch(name, p) for p in self.exclude)


def watch_with_watchfiles(watchfiles, dirs, keep, stop):
    for changes in watchfiles.watch(*dirs, watch_filter=lambda _change, path: keep(path), stop_event=stop,
                                    rust_timeout=1000, yield_on_timeout=True, raise_interrupt=False):
        yield sorted({path for _change, path in changes})


def snapshot(dirs, keep):
    seen = {}
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs[:] = [s for s in subdirs if not any(fnmatch.fnmatch(s, p) for p in keep.exclude)]
            for f in files:
                path = os.path.join(root, f)
                if keep(path):
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    seen[path] = (st.st_mtime_ns, st.st_size)
    return seen


def watch_by_polling(dirs, keep, stop):
    before = snapshot(dirs, keep)
    yield []  # armed
    while not stop.is_set():
        time.sleep(POLL_SECONDS)
        now = snapshot(dirs, keep)
        yield sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))
        before = now


def drop_bytecode(path):
    if path.endswith(".py"):
        try:
            os.unlink(importlib.util.cache_from_source(path))
        except (OSError, ValueError, NotImplementedError):
            pass


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gorgon._watch")
    p.add_argument("--server", type=int, required=True)
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--include", action="append", default=[])
    p.add_argument("--exclude", action="append", default=[])
    args = p.parse_args(argv)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != args.server:
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dirs = [os.path.abspath(d) for d in args.dir]
    keep = Filter(dirs, args.include, args.exclude)
    try:
        import watchfiles
    except ImportError:
        watchfiles = None
    if watchfiles is not None:
        changes = watch_with_watchfiles(watchfiles, dirs, keep, stop)
        how = "watchfiles"
    else:
        changes = watch_by_polling(dirs, keep, stop)
        how = "polling every %gs (pip install watchfiles for inotify)" % POLL_SECONDS
    armed = False
    for paths in changes:
        if stop.is_set() or os.getppid() != args.server:
            break
        if not armed:
            # The first yield comes once the watch is in place (watchfiles:
            # after its first quiet second): from here no change is missed.
            log("INFO", "--reload: watching %s for %s (%s)" % (", ".join(dirs), " ".join(args.include), how))
            armed = True
        if not paths:
            continue
        for path in paths:
            drop_bytecode(path)
        shown = ", ".join(os.path.relpath(x, dirs[0]) if x.startswith(dirs[0] + os.sep) else x for x in paths[:5])
        log("INFO", "--reload: %s changed: reloading" % (shown + (" and %d more" % (len(paths) - 5) if len(paths) > 5 else "")))
        try:
            os.kill(args.server, signal.SIGHUP)
        except ProcessLookupError:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
