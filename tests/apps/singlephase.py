"""An app importing _testsinglephase, a single-phase-init extension module that
refuses to load in a sub-interpreter with its own GIL."""
import _testsinglephase  # noqa: F401

from _wsgicheck import checked, text_response

app = checked(lambda environ, start_response: text_response(start_response, "unreachable"))
