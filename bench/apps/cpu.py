"""CPU-bound handler: the first N digits of pi in pure Python (?digits=N).
Counts requests per interpreter when $BENCH_COUNTS is set (counting.py)."""

from urllib.parse import parse_qs

from counting import count
from pi import pi_digits


def app(environ, start_response):
    count(environ)
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(qs.get("digits", ["1000"])[0])
    body = pi_digits(n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
