#!/usr/bin/env python3
"""Repro: a keep-alive connection is reset right after a response that took
longer than --keep-alive (default 5 s), when the client sends its next request
on it at once and another client keeps the worker busy meanwhile.

    gorgon app:app --chdir bench/repro --workers 1 --bind 127.0.0.1:18022 &
    .venv/bin/python bench/repro/keepalive_reset.py 18022 6

Expected: A2 200. Seen: A2 ConnectionResetError. (4 s instead of 6: A2 200.)
Likely cause: the idle deadline set after the response is taken from the loop
clock read before the batch (before the 6 s handler ran), so it is already in
the past; the next timeout scan, after the other client's request, closes the
connection with A2 unread (RST). Any batch lasting longer than --keep-alive
does this to the connections served late in it, e.g. under the back-to-back
serving that fairness.py shows.
"""
import http.client
import sys
import threading
import time

port = int(sys.argv[1])
slow = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0


def get(c, path):
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    return r.status


res = {}


def other():  # becomes ready while A's handler runs, keeps the worker busy 0.5 s
    time.sleep(slow / 2)
    res["E"] = get(http.client.HTTPConnection("127.0.0.1", port, timeout=60), "/?sleep=0.5")


t = threading.Thread(target=other)
t.start()
a = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
res["A1"] = get(a, f"/?sleep={slow}")
try:
    res["A2"] = get(a, "/")  # the next request on the same keep-alive connection, sent at once
except Exception as e:  # noqa: BLE001
    res["A2"] = f"FAILED: {type(e).__name__}: {e}"
t.join()
print(f"handler {slow} s: {res}")
sys.exit(0 if res["A2"] == 200 else 1)
