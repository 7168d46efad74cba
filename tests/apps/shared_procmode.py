"""Opens a gorgon channel and answers with the outcome and gorgon.mode: in
--mode processes the call must fail with a clear RuntimeError."""
import gorgon
from _wsgicheck import checked, json_response


def _app(environ, start_response):
    try:
        gorgon.channel("procmode-test")
        outcome = "opened"
    except RuntimeError as exc:
        outcome = "RuntimeError: %s" % exc
    return json_response(start_response, {"outcome": outcome, "mode": gorgon.mode})


app = checked(_app)
