#!/usr/bin/env python3
"""Short requests while one worker runs a long one: 8 keep-alive
connections opened and used while the server is idle (a proxy's upstream
pool), then a 2 s CPU-bound request on one of them and, meanwhile, short
requests one after another on the other 7. The p50/p99/max latency of the
short ones, for gorgon (WSGI, ASGI; 2 workers) and, when .venv-bench has
them, gunicorn gthread and granian. A server whose work follows idle workers
answers them from the other worker at once; one that keeps each connection
on the worker that accepted it makes some wait for the long request.

    .venv/bin/python bench/long_request.py [--long-ms 2000] [--short 300]

Writes docs/results/long_request.json.
"""
import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from warm_pool import BENCH_BIN, HOST, PY, REPO, free_port, request, start, stop  # noqa: E402


def servers():
    g = [PY, "-m", "gorgon"]
    common = ["--workers", "2", "--mode", "interpreters", "--log-level", "warning"]
    yield "gorgon WSGI", lambda port: g + ["cpu:app", "--bind", f"{HOST}:{port}", *common]
    yield "gorgon ASGI", lambda port: g + ["cpu_asgi:app", "--bind", f"{HOST}:{port}", *common]
    gu = os.path.join(BENCH_BIN, "gunicorn")
    if os.path.exists(gu):
        yield "gunicorn gthread (4 threads)", lambda port: [gu, "-w", "2", "-k", "gthread", "--threads", "4",
                                                            "-b", f"{HOST}:{port}", "cpu:app"]
    gr = os.path.join(BENCH_BIN, "granian")
    if os.path.exists(gr):
        yield "granian WSGI", lambda port: [gr, "--interface", "wsgi", "--workers", "2", "--host", HOST,
                                            "--port", str(port), "cpu:app"]


def digits_for(port, ms):
    """The pi digits whose computation takes about ms on this machine."""
    with socket.create_connection((HOST, port), 10) as s:
        d = 500
        while True:
            t0 = time.perf_counter()
            request(s, "/?digits=%d" % d)
            took = (time.perf_counter() - t0) * 1000
            if took >= ms / 4 or d > 200000:
                return int(d * (ms / took) ** 0.5)  # pi digits cost about n^2
            d *= 2


def measure(argv, port, long_ms, n_short):
    p = start(argv, port)
    socks = []
    try:
        digits = digits_for(port, long_ms)
        socks = [socket.create_connection((HOST, port), 30) for _ in range(8)]
        for s in socks:
            request(s, "/?digits=10")
        time.sleep(0.3)
        done = threading.Event()
        long_took = []

        def long_one():
            t0 = time.perf_counter()
            request(socks[0], "/?digits=%d" % digits)
            long_took.append(time.perf_counter() - t0)
            done.set()
        t = threading.Thread(target=long_one)
        t.start()
        time.sleep(0.1)
        lat = []
        i = 0
        while not done.is_set() and len(lat) < n_short:
            s = socks[1 + i % 7]
            t0 = time.perf_counter()
            request(s, "/?digits=10")
            lat.append(time.perf_counter() - t0)
            i += 1
        t.join()
        lat.sort()
        return {"long_s": long_took[0], "short_requests": len(lat),
                "p50_ms": statistics.median(lat) * 1000,
                "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "max_ms": lat[-1] * 1000}
    finally:
        for s in socks:
            s.close()
        stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long-ms", type=int, default=2000)
    ap.add_argument("--short", type=int, default=300, help="at most this many short requests")
    args = ap.parse_args()
    rows = []
    for name, argv in servers():
        port = free_port()
        try:
            r = measure(argv(port), port, args.long_ms, args.short)
        except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
            print("%-30s failed: %s" % (name, e), flush=True)
            continue
        r["server"] = name
        rows.append(r)
        print("%-30s long %.2f s   %d short: p50 %6.2f ms  p99 %7.2f ms  max %7.2f ms" % (
            name, r["long_s"], r["short_requests"], r["p50_ms"], r["p99_ms"], r["max_ms"]), flush=True)
    out = os.path.join(REPO, "docs", "results", "long_request.json")
    with open(out, "w") as f:
        json.dump({"long_ms": args.long_ms, "python": sys.version.split()[0], "rows": rows}, f, indent=1)
    print("wrote", os.path.relpath(out, REPO))


if __name__ == "__main__":
    main()
