#!/usr/bin/env python3
"""Repro: one worker serves the same keep-alive connection many times in a
row while other connections with a request waiting get nothing.

    gorgon app:app --chdir bench/repro --workers 1 --bind 127.0.0.1:18023 &
    .venv/bin/python bench/repro/fairness.py 18023 4 10

4 keep-alive connections, each sending its next request as soon as the last
answer arrives, for 10 s; every request computes 1000 digits of pi (~40 ms).
A fair worker serves them in turn: latency ~4 x 40 ms, a run of 1 per
connection. Seen on a busy machine: runs of 8-27 requests on one connection,
latency up to 1-9 s. On an idle machine this Python client is often too slow
to have its next request in before the worker looks for it, and the runs stay
at 1 (the request counts per connection still differ 2:1); wrk is fast
enough, so the reliable repro is the benchmark's own CPU section:

    .venv/bin/python bench/run.py --quick --only cpu --duration 10 --warmup 0
"""
import collections
import http.client
import sys
import threading
import time

port, n, dur = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
res = collections.defaultdict(list)


def run(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    end = time.monotonic() + dur
    while time.monotonic() < end:
        t = time.perf_counter()
        c.request("GET", "/?pi=1000")
        r = c.getresponse()
        interp, run_len = r.read().decode().split()
        res[i].append((time.perf_counter() - t, interp, int(run_len)))


ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
for t in ts:
    t.start()
for t in ts:
    t.join()
worst = 0
for i in range(n):
    lat = [x[0] for x in res[i]]
    longest = max(x[2] for x in res[i])
    worst = max(worst, longest)
    print(f"connection {i}: {len(lat)} requests, worker interpreter(s) {sorted({x[1] for x in res[i]})}, "
          f"max latency {max(lat) * 1000:.0f} ms, longest run served back to back: {longest}")
sys.exit(0 if worst <= 2 else 1)
