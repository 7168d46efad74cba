"""Raises GorgonTestError. ?where=before (default: before start_response) or
after_start (after start_response, before returning a body)."""
from _wsgicheck import checked, query


class GorgonTestError(Exception):
    pass


def _raises(environ, start_response):
    where = query(environ).get("where", "before")
    if where == "after_start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise GorgonTestError("boom-after-start-response")
    raise GorgonTestError("boom-before-start-response")


app = checked(_raises)
