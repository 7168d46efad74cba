"""A module-level counter: each interpreter has its own module state."""
from _wsgicheck import checked, interp_id, json_response, native_tid

COUNT = 0


def _counter(environ, start_response):
    global COUNT
    COUNT += 1
    return json_response(start_response, {"interp": interp_id(), "count": COUNT,
                                          "tid": native_tid()})


app = checked(_counter)
