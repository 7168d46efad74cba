"""A module-level counter: each interpreter has its own module state.

?meet=KEY: after counting, wait for a second request with the same KEY to
be running (_wsgicheck.meet), so that a pair of requests is served by two
workers at once."""
from _wsgicheck import checked, interp_id, json_response, meet, native_tid, query

COUNT = 0


def _counter(environ, start_response):
    global COUNT
    COUNT += 1
    count = COUNT
    key = query(environ).get("meet")
    met = meet(key, 2, 30)[0] if key else None
    return json_response(start_response, {"interp": interp_id(), "count": count,
                                          "tid": native_tid(), "met": met})


app = checked(_counter)
