"""Busy loop for ?ms=N milliseconds of this thread's CPU time (default 100).

?marker=PATH gets a "started" line before the loop. Answers JSON: start/end (time.time()), cpu (thread CPU seconds used), interp
(interpreter id), tid (OS thread id), pid. CPU time, not wall time, is what the
loop counts, so with a GIL shared between workers two requests would take twice
as long on the wall clock, while with own-GIL interpreters they run in parallel.
"""
import _interpreters
import os
import time

from _wsgicheck import append_line, checked, interp_id, json_response, meet, native_tid, query, spin_cpu


def _cpu(environ, start_response):
    q = query(environ)
    ms = float(q.get("ms", "100"))
    if q.get("marker"):
        append_line(q["marker"], "started")
    start = time.time()
    x, cpu = spin_cpu(ms)
    end = time.time()
    return json_response(start_response, {
        "start": start, "end": end, "cpu": cpu, "interp": interp_id(),
        "tid": native_tid(), "pid": os.getpid(), "loops": x,
        "gil": _interpreters.get_config(interp_id()).gil})


app = checked(_cpu)


def _meet(environ, start_response):
    """?key=K&n=N&timeout=S: waits holding the GIL for N requests to be
    running at once (see _wsgicheck.meet)."""
    q = query(environ)
    met, waited = meet(q["key"], int(q.get("n", "2")), float(q.get("timeout", "30")))
    return json_response(start_response, {
        "met": met, "waited": waited, "interp": interp_id(), "tid": native_tid(),
        "gil": _interpreters.get_config(interp_id()).gil})


meet_app = checked(_meet)
