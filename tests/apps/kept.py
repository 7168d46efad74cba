"""For the free-threading tests: whether the GIL is on in the serving
process (/gil), and request objects an application keeps past the end of
their response (/keep stores them, /use then reads and calls them)."""
import sys
import sysconfig

from _wsgicheck import json_response

KEPT = {}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/gil":
        return json_response(start_response, {
            "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
        })
    if path == "/keep":
        KEPT["input"] = environ["wsgi.input"]
        KEPT["start_response"] = start_response
        return json_response(start_response, {"kept": True})
    seen = {"read": repr(KEPT["input"].read()), "readline": repr(KEPT["input"].readline())}
    try:
        KEPT["start_response"]("200 OK", [])
    except RuntimeError as e:
        seen["start_response"] = str(e)
    return json_response(start_response, seen)
