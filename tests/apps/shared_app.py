"""The app of tests/e2e/test_shared.py: routes /store/<name> to
shared_store.py and /channel/<name> to shared_channels.py, every endpoint
wrapped in wsgiref.validate. /hold keeps one worker busy so that the test
can send requests to the other one (with the default shared listening
socket only an idle worker accepts)."""
import time

import gorgon
import shared_channels
import shared_store
from _wsgicheck import checked, json_response, query, text_response


def hold(environ, start_response):
    q = query(environ)
    key = q["key"]
    bad = shared_store.check_roundtrip(q["prefix"]) if "prefix" in q else []
    gorgon.shared.set(key + ":held", gorgon.worker_id)
    deadline = time.monotonic() + float(q.get("t", 30))
    while not gorgon.shared.get(key + ":release") and time.monotonic() < deadline:
        time.sleep(0.002)
    return json_response(start_response, {"worker": gorgon.worker_id, "bad": bad})


def release(environ, start_response):
    gorgon.shared.set(query(environ)["key"] + ":release", True)
    return json_response(start_response, {"worker": gorgon.worker_id})


ROUTES = {("store", k): checked(v) for k, v in shared_store.ROUTES.items()}
ROUTES.update({("channel", k): checked(v) for k, v in shared_channels.ROUTES.items()})
ROUTES[("hold", "")] = checked(hold)
ROUTES[("release", "")] = checked(release)

_not_found = checked(lambda environ, start_response: text_response(
    start_response, "no such route\n", "404 Not Found"))


def app(environ, start_response):
    parts = environ.get("PATH_INFO", "/").strip("/").split("/") + [""]
    return ROUTES.get((parts[0], parts[1]), _not_found)(environ, start_response)
