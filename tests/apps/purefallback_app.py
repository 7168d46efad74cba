"""Imports purepkg._testsinglephase: a compiled module that refuses
sub-interpreters, with its pure-Python source beside it (the test builds the
package); and purepkg._zoneinfo, a compiled module that loads in any
interpreter, with a source beside it too. Answers which ones were loaded."""
import importlib

import purepkg._zoneinfo as ok
import purepkg._testsinglephase as mod

importlib.invalidate_caches()  # goes through the fallback's finder too

from _wsgicheck import checked, interp_id, json_response


def _app(environ, start_response):
    return json_response(start_response, {
        "file": mod.__file__, "source": getattr(mod, "FROM_SOURCE", False), "interp": interp_id(),
        "ok_file": ok.__file__, "ok_source": getattr(ok, "FROM_SOURCE", False)})


app = checked(_app)
