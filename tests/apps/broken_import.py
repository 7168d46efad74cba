"""An app module whose import fails: it needs a module that does not exist."""
import gorgon_test_missing_dependency  # noqa: F401

from _wsgicheck import checked, text_response

app = checked(lambda environ, start_response: text_response(start_response, "unreachable"))
