"""An app importing datetime and sqlite3 (the datetime-at-shutdown hazard)."""
import datetime
import sqlite3

from _wsgicheck import checked, json_response


def _dtsql(environ, start_response):
    con = sqlite3.connect(":memory:")
    try:
        (one,) = con.execute("select 1").fetchone()
    finally:
        con.close()
    return json_response(start_response, {
        "now": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "sqlite": sqlite3.sqlite_version, "one": one})


app = checked(_dtsql)
