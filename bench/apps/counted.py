"""Plaintext hello that counts requests and connections per interpreter
(see counting.py), to see how evenly gorgon's workers share the load."""

from counting import count

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    count(environ)
    start_response("200 OK", HEADERS)
    return [BODY]
