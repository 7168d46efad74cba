"""CPU-bound handler: the first N digits of pi in pure Python (?digits=N).
Counts requests per interpreter when $BENCH_COUNTS is set (counting.py)."""

from urllib.parse import parse_qs

from counting import count


def pi_digits(n):
    """First n decimal digits of pi (Gibbons' unbounded spigot, Python ints only)."""
    q, r, t, k, m, x = 1, 0, 1, 1, 3, 3
    out = []
    while len(out) < n:
        if 4 * q + r - t < m * t:
            out.append(m)
            q, r, m = 10 * q, 10 * (r - m * t), (10 * (3 * q + r)) // t - 10 * m
        else:
            q, r, t, k, m, x = (q * k, (2 * q + r) * x, t * x, k + 1,
                                (q * (7 * k + 2) + r * x) // (t * x), x + 2)
    return "".join(map(str, out))


def app(environ, start_response):
    count(environ)
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(qs.get("digits", ["1000"])[0])
    body = pi_digits(n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
