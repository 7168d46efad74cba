"""Imports purepkg._testsinglephase: a compiled module that refuses
sub-interpreters, with its pure-Python source beside it (the test builds the
package). Answers which of the two was loaded."""
import purepkg._testsinglephase as mod

from _wsgicheck import checked, interp_id, json_response


def _app(environ, start_response):
    return json_response(start_response, {
        "file": mod.__file__, "source": getattr(mod, "FROM_SOURCE", False), "interp": interp_id()})


app = checked(_app)
