"""Sleeps ?s=SECONDS (default 1) before answering; ?marker=PATH is created when
the request starts, so a test knows the request is in flight."""
import time

from _wsgicheck import append_line, checked, query, text_response


def _slow(environ, start_response):
    q = query(environ)
    seconds = float(q.get("s", "1"))
    if q.get("marker"):
        append_line(q["marker"], "started")
    time.sleep(seconds)
    return text_response(start_response, "slept %s\n" % seconds)


app = checked(_slow)
