"""gorgon channels from inside the workers: many producers and consumers
(threads in each worker), timeouts, and the async forms under asyncio.run.
"""
import asyncio
import threading
import time

import gorgon
from _wsgicheck import json_response, query
from shared_store import _arrive


def mpmc(environ, start_response):
    """`producers` threads send into channel `send_to` (producer p sends
    p*count .. (p+1)*count-1; the last of the channel's `total_producers`,
    across workers, closes it) while `consumers` threads receive from channel
    `recv_from` until it is closed; returns what they received."""
    q = query(environ)
    index, producers, consumers = int(q["index"]), int(q["producers"]), int(q["consumers"])
    count, total_producers = int(q["count"]), int(q["total_producers"])
    capacity = int(q.get("capacity", 256))
    out_ch, in_ch = gorgon.channel(q["send_to"], capacity), gorgon.channel(q["recv_from"], capacity)
    _arrive(q)
    received = [[] for _ in range(consumers)]
    errors = []

    def produce(p):
        try:
            for i in range(p * count, (p + 1) * count):
                out_ch.send(i, timeout=60)
            if gorgon.shared.incr(out_ch.name + ":producers-done") == total_producers:
                out_ch.close()
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))

    def consume(c):
        try:
            while True:
                try:
                    received[c].append(in_ch.recv(timeout=60))
                except gorgon.Closed:
                    return
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))

    threads = [threading.Thread(target=produce, args=(index * producers + p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return json_response(start_response, {"worker": gorgon.worker_id, "start": start, "end": time.time(),
                                          "received": [x for r in received for x in r],
                                          "per_consumer": [len(r) for r in received], "errors": errors})


def recv_timeout(environ, start_response):
    q = query(environ)
    ch = gorgon.channel(q["name"])
    t = float(q["t"])
    t0 = time.monotonic()
    try:
        value = ch.recv(timeout=t)
        outcome = "got %r" % (value,)
    except gorgon.Empty:
        outcome = "empty"
    return json_response(start_response, {"outcome": outcome, "elapsed": time.monotonic() - t0})


def send_timeout(environ, start_response):
    q = query(environ)
    ch = gorgon.channel(q["name"], 2)
    ch.send(1)
    ch.send(2)
    t0 = time.monotonic()
    try:
        ch.send(3, timeout=float(q["t"]))
        outcome = "sent"
    except gorgon.Full:
        outcome = "full"
    return json_response(start_response, {"outcome": outcome, "elapsed": time.monotonic() - t0})


def send(environ, start_response):
    q = query(environ)
    gorgon.channel(q["name"]).send(int(q["value"]))
    return json_response(start_response, {"worker": gorgon.worker_id})


def recv(environ, start_response):
    q = query(environ)
    value = gorgon.channel(q["name"]).recv(timeout=float(q.get("t", 10)))
    return json_response(start_response, {"worker": gorgon.worker_id, "value": value})


def recv_forever(environ, start_response):
    """Waits with no timeout (for the shutdown test)."""
    q = query(environ)
    ch = gorgon.channel(q["name"])
    _arrive(q)
    return json_response(start_response, {"value": ch.recv()})


async def _ticking(coro, q=None):
    """Runs coro while a ticker counts 10 ms sleeps: a blocked loop would
    not tick. With a mark in q, the 10th tick stores mark:ticked, so a test
    can wait for it instead of sleeping."""
    ticks = 0
    ticked = q["mark"] + ":ticked" if q and "mark" in q else None

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks == 10 and ticked:
                gorgon.shared.set(ticked, gorgon.worker_id)

    ticker = asyncio.create_task(tick())
    t0 = time.monotonic()
    try:
        outcome = "got %r" % (await coro,)
    except gorgon.Empty:
        outcome = "empty"
    except gorgon.Full:
        outcome = "full"
    finally:
        ticker.cancel()
    return {"outcome": outcome, "ticks": ticks, "elapsed": time.monotonic() - t0,
            "worker": gorgon.worker_id}


def async_recv(environ, start_response):
    q = query(environ)
    ch = gorgon.channel(q["name"])
    _arrive(q)
    t = float(q["t"]) if "t" in q else None
    return json_response(start_response, asyncio.run(_ticking(ch.recv_async(timeout=t), q)))


def async_send(environ, start_response):
    """Fills the channel, then awaits send_async of one more value."""
    q = query(environ)
    ch = gorgon.channel(q["name"], int(q["capacity"]))
    while True:
        try:
            ch.send_nowait(0)
        except gorgon.Full:
            break
    _arrive(q)
    t = float(q["t"]) if "t" in q else None
    return json_response(start_response, asyncio.run(_ticking(ch.send_async(99, timeout=t), q)))


def async_many(environ, start_response):
    """Several coroutines of one loop wait on one channel at once; a producer
    coroutine feeds them: each value arrives exactly once."""
    q = query(environ)
    ch = gorgon.channel(q["name"], 4)
    n, waiters = int(q["n"]), int(q["waiters"])

    async def main():
        got = []

        async def consumer():
            while True:
                v = await ch.recv_async(timeout=10)
                if v is None:
                    return
                got.append(v)

        tasks = [asyncio.create_task(consumer()) for _ in range(waiters)]
        for i in range(n):
            await ch.send_async(i, timeout=10)
        for _ in range(waiters):
            await ch.send_async(None, timeout=10)
        await asyncio.gather(*tasks)
        return sorted(got)

    return json_response(start_response, {"got": asyncio.run(main())})


ROUTES = {"mpmc": mpmc, "recv_timeout": recv_timeout, "send_timeout": send_timeout, "send": send,
          "recv": recv, "recv_forever": recv_forever, "async_recv": async_recv,
          "async_send": async_send, "async_many": async_many}
