"""Calls threading.current_thread() in every request, as Django does: on a
worker thread, which Python did not start, that makes a _DummyThread."""
import threading

from _wsgicheck import checked, text_response


def _app(environ, start_response):
    return text_response(start_response, type(threading.current_thread()).__name__)


app = checked(_app)
