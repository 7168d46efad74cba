"""JSON response (WSGI): a small dict serialised per request, as in TechEmpower's JSON test."""

import json

from counting import count


def app(environ, start_response):
    count(environ)
    body = json.dumps({"message": "Hello, World!", "server": "bench", "items": [1, 2, 3]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
