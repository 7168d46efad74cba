#!/usr/bin/env python3
"""gorgon.shared against multiprocessing.Manager().dict() and a local Redis:
get / set / incr operations per second from 2 workers at once, in one run;
and gorgon.shared and channels over that Redis (--shared-url, loopback TCP
and unix socket) against the same calls made with the `redis` client: get,
set, incr, cas and a channel round trip (send then receive).

    make && bench/setup-venv && .venv-bench/bin/python bench/shared_bench.py [--quick] [--repeat N]

Each system is driven the way an application would use it, one call per
operation, from two workers running at the same time; each worker times its
own loop, and the rate is the sum of the two workers' rates. Each rate is
measured REPEAT times (--repeat N, default 3) and the median is reported.

  gorgon   `python -m gorgon shared_bench:app --workers 2`: this file is also
           the app; a request runs the loop inside a worker interpreter.
  Manager  two processes on one Manager().dict(); incr is `with lock:
           d[k] = d.get(k, 0) + 1` on a Manager().Lock(), since the dict has
           no atomic increment.
  Redis    Debian's redis-server, started here on a free loopback port in a
           temporary directory with no persistence; two processes with the
           `redis` client from PyPI (GET, SET, INCR).
  gorgon over Redis
           the gorgon app again with --shared-url naming that redis-server,
           by TCP (redis://127.0.0.1:PORT) and by its unix socket
           (unix:///...): the same workers and loop, each call a round trip.
           Compared with the `redis` client over TCP, and over the unix
           socket (its unix_socket_path), from two processes.

Keys: a pool of 100 (k0..k99 for get/set/cas, c0..c99 for incr); values: a
16-character str. cas is cas(key, value, value) on a key that holds value
(it always succeeds: one compare-and-set, no retries); with the `redis`
client, the same compare-and-set as a server-side script (EVALSHA, as
gorgon does). chan is one send_nowait then one recv_nowait on a channel both
workers use (with the `redis` client: LPUSH then RPOP on one list, which
checks no capacity and no closed flag, so it does less than gorgon's send). Results: a table of ratios on stdout, and
bench/results/shared-<timestamp>.json. Exit status 1 if a system could not
be measured or a target (20x Manager, 5x Redis; over Redis, 1.5x the
`redis` client on the same transport) is missed.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
HOST = "127.0.0.1"
KEYS = ["k%d" % i for i in range(100)]
COUNTERS = ["c%d" % i for i in range(100)]
VALUE = "v" * 16
OPS = ("get", "set", "incr")  # also measured with Manager and against the in-process Redis target
REDIS_OPS = OPS + ("cas", "chan")  # gorgon over Redis against the redis client
CHANNEL = "bench-chan"
CAS_LUA = ("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end "
           "return 0")
TARGETS = {"manager": 20.0, "redis": 5.0}
REDIS_TARGET = 1.5  # gorgon over Redis against the redis client, same transport


def loop_ops(op, n, get, set_, incr, cas=None, chan=None):
    """Runs n operations; returns the seconds they took. chan: (send, recv)."""
    keys, counters, value = KEYS, COUNTERS, VALUE
    t0 = time.perf_counter()
    if op == "get":
        for i in range(n):
            get(keys[i % 100])
    elif op == "set":
        for i in range(n):
            set_(keys[i % 100], value)
    elif op == "incr":
        for i in range(n):
            incr(counters[i % 100])
    elif op == "cas":
        for i in range(n):
            cas(keys[i % 100], value, value)
    else:
        send, recv = chan
        for i in range(n):
            send(value)
            recv()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- the gorgon app


def app(environ, start_response):
    """/run?op=get&n=100000&rv=KEY: waits for the other worker (rendezvous on
    rv in the store), then times n operations on gorgon.shared."""
    import gorgon
    from urllib.parse import parse_qs

    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    shared = gorgon.shared
    if environ.get("PATH_INFO") == "/peek":
        body = {"value": shared.get(q["key"])}
    else:
        for k in KEYS:
            shared.setdefault(k, VALUE)
        shared.incr(q["rv"])
        deadline = time.monotonic() + 10
        while shared.get(q["rv"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.0002)
        alone = shared.get(q["rv"]) < 2
        n = int(q["n"])
        ch = gorgon.channel(CHANNEL)
        if q["op"] == "cas" and not shared.cas(KEYS[0], VALUE, VALUE):
            raise AssertionError("cas on a key holding the value failed")
        secs = loop_ops(q["op"], n, shared.get, shared.set, shared.incr, shared.cas,
                        (ch.send_nowait, ch.recv_nowait))
        body = {"worker": gorgon.worker_id, "n": n, "seconds": secs, "alone": alone}
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


# ---------------------------------------------------------------- helpers


def log(msg):
    print("[shared-bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(port, target, timeout=60):
    import http.client

    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", target)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("GET %s: %d %r" % (target, r.status, body[:300]))
        return json.loads(body)
    finally:
        c.close()


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited early with status %s" % proc.returncode)
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("not listening on %d after %ss" % (port, timeout))


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


REPEAT = 3


def median_rate(measure):
    """The median over REPEAT runs of measure() (a list of worker results)."""
    import statistics

    return statistics.median(rate(measure()) for _ in range(REPEAT))


def rate(results):
    """Sum of the workers' own rates (they ran at the same time)."""
    return sum(r["n"] / r["seconds"] for r in results)


# ---------------------------------------------------------------- gorgon


def gorgon_pair(port, op, n):
    """One request per worker: the first is held in the rendezvous (so it
    cannot accept) until the second arrives at the other worker."""
    rv = "rv-%s-%d" % (op, time.monotonic_ns())
    box = {}
    t = threading.Thread(target=lambda: box.update(a=http_get(port, "/run?op=%s&n=%d&rv=%s" % (op, n, rv))))
    t.start()
    deadline = time.monotonic() + 10
    while http_get(port, "/peek?key=" + rv)["value"] is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the first request never arrived")
        time.sleep(0.01)
    b = http_get(port, "/run?op=%s&n=%d&rv=%s" % (op, n, rv))
    t.join()
    a = box["a"]
    if a["alone"] or b["alone"] or a["worker"] == b["worker"]:
        raise RuntimeError("the two loops did not run on two workers at once: %r %r" % (a, b))
    return [a, b]


def bench_gorgon(n, extra=(), ops=OPS):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, BENCH]), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "gorgon", "shared_bench:app", "--workers", "2", "--no-reuse-port",
           "--bind", "%s:%d" % (HOST, port), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        return {op: median_rate(lambda: gorgon_pair(port, op, n)) for op in ops}
    finally:
        stop(proc)


# ---------------------------------------------------------------- Manager


def manager_worker(d, lock, barrier, op, n, out):
    def incr(k):
        with lock:
            d[k] = d.get(k, 0) + 1

    barrier.wait()
    out.put({"n": n, "seconds": loop_ops(op, n, d.get, d.__setitem__, incr)})


def run_two(target, args, n, op):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=target, args=args + (barrier, op, n, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    return results


def bench_manager(n):
    import multiprocessing as mp

    with mp.get_context("fork").Manager() as mgr:
        d, lock = mgr.dict(), mgr.Lock()
        for k in KEYS:
            d[k] = VALUE
        return {op: median_rate(lambda: run_two(manager_worker, (d, lock), n, op)) for op in OPS}


# ---------------------------------------------------------------- Redis


def redis_worker(port, sock, barrier, op, n, out):
    import redis

    r = redis.Redis(unix_socket_path=sock) if sock else redis.Redis(host=HOST, port=port)
    r.ping()
    script = r.register_script(CAS_LUA)

    def cas(key, expected, new):
        return script(keys=[key], args=[expected, new])
    if op == "cas" and cas(KEYS[0], VALUE, VALUE) != 1:
        raise AssertionError("cas on a key holding the value failed")
    chan = (lambda v: r.lpush(CHANNEL, v), lambda: r.rpop(CHANNEL))
    barrier.wait()
    out.put({"n": n, "seconds": loop_ops(op, n, r.get, r.set, r.incr, cas, chan)})


def start_redis(tmp):
    exe = subprocess.run(["sh", "-c", "command -v redis-server"], capture_output=True, text=True).stdout.strip()
    if not exe:
        raise RuntimeError("redis-server not found (Debian package redis-server)")
    port = free_port()
    sock = os.path.join(tmp, "redis.sock")
    cmd = [exe, "--bind", HOST, "--port", str(port), "--unixsocket", sock, "--unixsocketperm", "700",
           "--dir", tmp, "--save", "", "--appendonly", "no",
           "--daemonize", "no", "--protected-mode", "yes", "--logfile", os.path.join(tmp, "redis.log")]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port, sock


def bench_redis(n, n_gorgon):
    """The redis client over TCP and the unix socket, then gorgon.shared over
    the same server both ways."""
    import redis  # noqa: F401 - fail early when the bench venv lacks it

    res = {}
    with tempfile.TemporaryDirectory(prefix="gorgon-redis-") as tmp:
        proc, port, sock = start_redis(tmp)
        try:
            r = redis.Redis(host=HOST, port=port)
            r.mset({k: VALUE for k in KEYS})
            res["redis"] = {op: median_rate(lambda: run_two(redis_worker, (port, None), n, op))
                            for op in REDIS_OPS}
            log("the redis client over the unix socket, 2 processes x %d ops" % n)
            res["redis-unix"] = {op: median_rate(lambda: run_two(redis_worker, (None, sock), n, op))
                                 for op in REDIS_OPS}
            for name, url in (("gorgon-redis", "redis://%s:%d/0" % (HOST, port)),
                              ("gorgon-redis-unix", "unix://" + sock)):
                log("gorgon.shared over %s, 2 workers x %d ops" % (url, n_gorgon))
                res[name] = bench_gorgon(n_gorgon, ("--shared-url", url, "--shared-prefix", name + ":"),
                                         REDIS_OPS)
        finally:
            stop(proc)
    return res


# ---------------------------------------------------------------- main


def report(res):
    lines = ["| op | gorgon.shared ops/s | Manager ops/s | Redis ops/s | x Manager | x Redis |",
             "|---|---:|---:|---:|---:|---:|"]
    failed = []
    for op in OPS:
        g, m, r = res["gorgon"][op], res["manager"][op], res["redis"][op]
        lines.append("| %s | %s | %s | %s | %.0fx | %.1fx |" % (
            op, format(round(g), ","), format(round(m), ","), format(round(r), ","), g / m, g / r))
        for peer, target in TARGETS.items():
            if res["gorgon"][op] / res[peer][op] < target:
                failed.append("%s: %.1fx %s, target %.0fx" % (op, g / res[peer][op], peer, target))
    lines += ["", "| op | gorgon over Redis, TCP | redis client, TCP | x | gorgon over Redis, unix | "
              "redis client, unix | x | in-process / over Redis (TCP) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for op in REDIS_OPS:
        gt, rt = res["gorgon-redis"][op], res["redis"][op]
        gu, ru = res["gorgon-redis-unix"][op], res["redis-unix"][op]
        lines.append("| %s | %s | %s | %.2fx | %s | %s | %.2fx | %.0fx |" % (
            op, format(round(gt), ","), format(round(rt), ","), gt / rt, format(round(gu), ","),
            format(round(ru), ","), gu / ru, res["gorgon"][op] / gt))
        for g, r, how in ((gt, rt, "TCP"), (gu, ru, "unix")):
            if g / r < REDIS_TARGET:
                failed.append("%s over Redis (%s): %.2fx the redis client, target %.1fx"
                              % (op, how, g / r, REDIS_TARGET))
    return "\n".join(lines), failed


def main(argv):
    global REPEAT
    quick = "--quick" in argv
    if "--repeat" in argv:
        REPEAT = int(argv[argv.index("--repeat") + 1])
    n = {"gorgon": 100000 if quick else 400000, "manager": 2000 if quick else 6000,
         "redis": 5000 if quick else 20000}
    res = {}
    log("gorgon.shared, 2 workers x %d ops per op" % n["gorgon"])
    res["gorgon"] = bench_gorgon(n["gorgon"], ops=REDIS_OPS)
    log("multiprocessing.Manager().dict(), 2 processes x %d ops" % n["manager"])
    res["manager"] = bench_manager(n["manager"])
    log("redis-server on loopback, the redis client, 2 processes x %d ops" % n["redis"])
    res.update(bench_redis(n["redis"], n["redis"]))
    table, failed = report(res)
    print(table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    path = os.path.join(BENCH, "results", "shared-%s.json" % stamp)
    with open(path, "w") as f:
        json.dump({"ops_per_second": res, "ops_per_worker": n, "targets": TARGETS, "redis_target": REDIS_TARGET, "repeat": REPEAT, "missed": failed,
                   "python": sys.version, "cpus": os.cpu_count()}, f, indent=2)
    log("results: %s" % os.path.relpath(path, ROOT))
    for line in failed:
        log("MISSED " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
