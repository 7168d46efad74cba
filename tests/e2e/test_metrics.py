"""The Prometheus endpoint (--metrics-bind): scraped and parsed with
prometheus_client's own text parser. Counters move by exactly what was sent
(requests by method and code, the histogram's count, bytes both ways), gauges
say what the workers and connections are doing, the endpoint answers while
every worker is busy in the application, counters never go back across
--max-requests and SIGHUP, and bad requests to the metrics port change
nothing."""
import os
import signal
import socket
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Conn, build_request, free_port, scaled, wait_for

INTERPRETERS = pytest.param(("--mode", "interpreters"), id="interpreters")
PROCS_X_INTERPS = pytest.param(("--mode", "interpreters", "--processes", "2"), id="processes-x-interpreters")
PROCESSES = pytest.param(("--mode", "processes"), id="processes")


def start(server, *args, app="router:app", workers=2, env=None):
    maddr = ("127.0.0.1", free_port())
    srv = server(app, "--metrics-bind", "%s:%d" % maddr, *args, workers=workers, env=env)
    wait_for(lambda: "Metrics at: http://%s:%d/metrics" % maddr in srv.stderr_text(), what="metrics address")
    srv.maddr = maddr
    return srv


def raw(addr, data, timeout=10):
    """Send data, read until the server closes; returns the bytes received."""
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(scaled(timeout))
        s.connect(addr)
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk


def scrape_text(maddr):
    resp = raw(maddr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), resp[:300]
    assert b"Content-Type: text/plain; version=0.0.4" in head
    return body.decode()


def scrape(maddr):
    """{(sample name, sorted labels): value}"""
    out = {}
    for fam in text_string_to_metric_families(scrape_text(maddr)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m, metric, **labels):
    return m.get((metric, tuple(sorted(labels.items()))), 0.0)


def total(m, name):
    return sum(v for (n, _), v in m.items() if n == name)


def counters(m):
    """Every counter sample (name ends in _total, _bucket, _count, _sum) but
    the process ones, which move on their own."""
    return {k: v for k, v in m.items()
            if k[0].startswith("gorgon_") and k[0].endswith(("_total", "_bucket", "_count", "_sum"))}


def assert_not_lower(before, after):
    for k, v in before.items():
        assert after.get(k, 0.0) >= v, "%s went back: %s -> %s" % (k, v, after.get(k))


# (method, target, body, expected code label)
MIX = [
    ("GET", "/hello", b"", "200"),
    ("GET", "/hello", b"", "200"),
    ("HEAD", "/hello", b"", "200"),
    ("POST", "/echo", b"x" * 1000, "200"),
    ("PUT", "/echo", b"abc", "200"),
    ("DELETE", "/status?code=204", b"", "204"),
    ("PATCH", "/status?code=201", b"", "201"),
    ("OPTIONS", "/status?code=404", b"", "404"),
    ("GET", "/status?code=418", b"", "4xx"),
    ("GET", "/status?code=599", b"", "5xx"),
    ("GET", "/no-such-route", b"", "404"),
    ("GET", "/raises", b"", "500"),
]


@pytest.mark.tsan
@pytest.mark.parametrize("mode", [INTERPRETERS, PROCS_X_INTERPS, PROCESSES])
def test_counts_match_exactly(server, mode):
    srv = start(server, *mode)
    before = scrape(srv.maddr)
    sent = received = 0
    expected = {}
    for method, target, body, code in MIX:
        req = build_request(method, target, [("Connection", "close")], body, host="x")
        resp = raw(srv.addr, req)
        assert resp.startswith(b"HTTP/1.1 "), resp[:200]
        sent += len(req)
        received += len(resp)
        expected[(method, code)] = expected.get((method, code), 0) + 1
    # Refused before a whole head: no method of its own ("other"), a 400.
    garbage = b"NOT A REQUEST\x01\r\n\r\n"
    resp = raw(srv.addr, garbage)
    assert resp.startswith(b"HTTP/1.1 400 "), resp[:200]
    sent += len(garbage)
    received += len(resp)
    expected[("other", "400")] = 1
    n = len(MIX) + 1

    after = scrape(srv.maddr)
    for (method, code), count in expected.items():
        d = value(after, "gorgon_requests_total", method=method, code=code) - \
            value(before, "gorgon_requests_total", method=method, code=code)
        assert d == count, (method, code, d, count)
    assert total(after, "gorgon_requests_total") - total(before, "gorgon_requests_total") == n
    for name in ("gorgon_request_duration_seconds_count", "gorgon_worker_requests_total"):
        assert total(after, name) - total(before, name) == n, name
    assert value(after, "gorgon_request_duration_seconds_bucket", le="+Inf") - \
        value(before, "gorgon_request_duration_seconds_bucket", le="+Inf") == n
    assert value(after, "gorgon_request_bytes_total") - value(before, "gorgon_request_bytes_total") == sent
    assert value(after, "gorgon_response_bytes_total") - value(before, "gorgon_response_bytes_total") == received
    assert value(after, "gorgon_request_duration_seconds_sum") >= value(before, "gorgon_request_duration_seconds_sum")
    assert value(after, "gorgon_workers", state="idle") + value(after, "gorgon_workers", state="busy") == \
        (4 if "--processes" in mode else 2)
    assert value(after, "process_resident_memory_bytes") > 10 << 20
    assert value(after, "process_open_fds") > 3
    assert value(after, "process_start_time_seconds") <= time.time()


def test_connection_and_worker_gauges(server):
    srv = start(server)
    idle = []
    for _ in range(3):
        c = Conn(srv.addr)
        assert c.request("GET", "/hello").status == 200
        idle.append(c)
    partial = Conn(srv.addr)
    partial.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # a head still coming

    def gauges():
        m = scrape(srv.maddr)
        return {s: value(m, "gorgon_connections", state=s)
                for s in ("idle", "reading", "active", "websocket", "closing")}, m

    wait_for(lambda: gauges()[0] == {"idle": 3, "reading": 1, "active": 0, "websocket": 0, "closing": 0},
             what="3 idle connections and 1 reading")
    m = gauges()[1]
    assert value(m, "gorgon_workers", state="idle") == 2
    assert value(m, "gorgon_workers", state="busy") == 0
    assert value(m, "gorgon_workers", state="starting") == 0
    for c in idle + [partial]:
        c.close()
    wait_for(lambda: sum(gauges()[0].values()) == 0, what="no connection left")


@pytest.mark.tsan
def test_answers_while_every_worker_is_busy(server):
    srv = start(server)
    results = []

    def slow():
        with Conn(srv.addr, timeout=30) as c:
            results.append(c.request("GET", "/slow?s=3").status)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: value(scrape(srv.maddr), "gorgon_workers", state="busy") == 2, timeout=2.5,
             what="both workers busy")
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        m = scrape(srv.maddr)
        times.append(time.monotonic() - t0)
        assert value(m, "gorgon_connections", state="active") == 2
    for t in threads:
        t.join()
    assert results == [200, 200]
    print("scrape while both workers sleep in the application: %s ms" % ", ".join("%.1f" % (t * 1000) for t in times))
    # The goal is < 100 ms; the bound leaves room for a loaded machine.
    assert max(times) < scaled(1.0), times


@pytest.mark.parametrize("mode", [INTERPRETERS, PROCS_X_INTERPS])
def test_counters_survive_max_requests_and_sighup(server, mode):
    srv = start(server, *mode, "--max-requests", "5")
    seen = counters(scrape(srv.maddr))
    sent = 0
    for _ in range(30):
        assert raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x")).startswith(
            b"HTTP/1.1 200 ")
        sent += 1
        now = counters(scrape(srv.maddr))
        assert_not_lower(seen, now)
        seen = now
    wait_for(lambda: value(scrape(srv.maddr), "gorgon_worker_restarts_total", reason="max-requests") >= 1,
             what="a worker replaced for --max-requests")
    m = scrape(srv.maddr)
    assert total(m, "gorgon_requests_total") == sent
    assert total(m, "gorgon_worker_requests_total") == sent
    assert value(m, "gorgon_requests_total", method="GET", code="200") == sent

    srv.send_signal(signal.SIGHUP)
    want = 2  # two worker processes, or two workers, replaced
    wait_for(lambda: value(scrape(srv.maddr), "gorgon_worker_restarts_total", reason="reload") >= want,
             timeout=30, what="reload counted")
    for _ in range(5):
        assert raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x")).startswith(
            b"HTTP/1.1 200 ")
        sent += 1
    after = scrape(srv.maddr)
    assert_not_lower(seen, counters(after))
    assert total(after, "gorgon_requests_total") == sent
    assert value(after, "gorgon_request_duration_seconds_count") == sent
    wait_for(lambda: value(scrape(srv.maddr), "gorgon_workers", state="stopping") == 0, what="old workers gone")


def test_worker_process_crash_keeps_counters(server):
    srv = start(server, "--mode", "processes")
    for _ in range(6):
        raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x"))
    m = scrape(srv.maddr)
    assert total(m, "gorgon_requests_total") == 6
    pids = [int(p) for p in open("/proc/%d/task/%d/children" % (srv.pid, srv.pid)).read().split()]
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: value(scrape(srv.maddr), "gorgon_worker_restarts_total", reason="crash") == 1,
             what="the crash counted")
    wait_for(lambda: "serving again" in srv.stderr_text(), timeout=20, what="the process restarted")
    raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x"))
    m = scrape(srv.maddr)
    assert total(m, "gorgon_requests_total") == 7
    assert value(m, "gorgon_workers", state="idle") == 2


def test_bad_requests_to_the_metrics_port_change_nothing(server):
    srv = start(server)
    raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x"))
    before = scrape(srv.maddr)
    cases = [
        (b"GET /other HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 "),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 "),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 405 "),
        (b"garbage\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /metrics HTTP/9\r\n\r\n", b"HTTP/1.1 400 "),
        (b"\x00\x01\x02\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /metrics HTTP/1.1\n\n", b"HTTP/1.1 400 "),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
    ]
    for data, want in cases:
        got = raw(srv.maddr, data)
        assert got.startswith(want), (data[:40], got[:100])
    # A client that connects and says nothing, and one that leaves half-way.
    idle = socket.create_connection(srv.maddr)
    with socket.create_connection(srv.maddr) as s:
        s.sendall(b"GET /met")
    head = raw(srv.maddr, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), head[-200:]
    after = scrape(srv.maddr)
    idle.close()
    assert counters(after) == counters(before)
    assert raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x")).startswith(
        b"HTTP/1.1 200 ")
    assert "metrics: 400 Bad Request" in srv.stderr_text()


def test_unix_socket_and_environment_variable(server, tmp_path):
    path = str(tmp_path / "metrics.sock")
    srv = server("router:app", env={"GORGON_METRICS_BIND": "unix:" + path})
    wait_for(lambda: "Metrics at: unix:%s (path /metrics)" % path in srv.stderr_text(), what="metrics address")
    raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x"))
    m = {}
    for fam in text_string_to_metric_families(raw(path, b"GET /metrics HTTP/1.0\r\n\r\n")
                                              .partition(b"\r\n\r\n")[2].decode()):
        for s in fam.samples:
            m[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert value(m, "gorgon_requests_total", method="GET", code="200") == 1


@pytest.mark.parametrize("mode", [INTERPRETERS, PROCESSES])
def test_off_by_default_and_touches_no_descriptor(server, mode):
    """Off, the endpoint opens nothing and closes nothing: the worker
    processes keep the standard input they were given."""
    srv = server("router:app", *mode)
    assert "Metrics at" not in srv.stderr_text()
    raw(srv.addr, build_request("GET", "/hello", [("Connection", "close")], host="x"))
    stdin = os.readlink("/proc/%d/fd/0" % srv.pid)
    children = [int(p) for p in open("/proc/%d/task/%d/children" % (srv.pid, srv.pid)).read().split()]
    assert len(children) == (2 if "processes" in mode else 0)
    for pid in children:
        assert os.readlink("/proc/%d/fd/0" % pid) == stdin


@pytest.mark.parametrize("mode", [INTERPRETERS, PROCESSES])
def test_shared_store_and_channel_figures(server, mode):
    srv = start(server, *mode, app="shared_app:app")

    def get(target):
        resp = raw(srv.addr, build_request("GET", target, [("Connection", "close")], host="x"))
        assert resp.startswith(b"HTTP/1.1 200 "), (resp[:300], srv.stderr_text()[-3000:])

    before = scrape(srv.maddr)
    for i in range(3):
        get("/store/set?key=metrics-key-%d&value=%d" % (i, i))
    procs = "processes" in mode
    for v in range(0 if procs else 4):  # --mode processes has no channels
        get("/channel/send?name=we%%22ird%%5Cname&value=%d" % v)
    if not procs:
        get("/channel/send?name=other&value=1")
    m = wait_for(lambda: (lambda m: m if value(m, "gorgon_shared_keys") == 3 else None)(scrape(srv.maddr)),
                 what="3 keys (worker processes publish theirs a few times a second)")
    assert value(m, "gorgon_shared_bytes") > value(before, "gorgon_shared_bytes")
    if procs:
        assert not any(n == "gorgon_channel_depth" for n, _ in m)
    else:
        assert value(m, "gorgon_channel_depth", name='we"ird\\name') == 4
        assert value(m, "gorgon_channel_depth", name="other") == 1


@pytest.mark.parametrize("mode", [INTERPRETERS, PROCESSES])
def test_redis_figures(server, own_redis, mode):
    """With --shared-url: round trips to Redis counted exactly, the failures
    of an outage as errors, the connections made again after it as
    reconnects; no local store figures (the store is in Redis)."""
    srv = start(server, *mode, "--shared-url", own_redis.url, "--shared-timeout", "0.5", app="shared_app:app")

    def get(target):
        resp = raw(srv.addr, build_request("GET", target, [("Connection", "close")], host="x"))
        assert resp.startswith(b"HTTP/1.1 200 "), (resp[:300], srv.stderr_text()[-3000:])
        return resp

    before = scrape(srv.maddr)
    assert ("gorgon_shared_redis_round_trips_total", ()) in before
    assert value(before, "gorgon_shared_redis_errors_total") == 0
    assert value(before, "gorgon_shared_redis_reconnects_total") == 0
    assert not any(n in ("gorgon_shared_bytes", "gorgon_shared_keys") for n, _ in before)
    for i in range(5):
        get("/store/set?key=metrics-redis-%d&value=%d" % (i, i))  # one SET each
    m = scrape(srv.maddr)
    assert value(m, "gorgon_shared_redis_round_trips_total") == \
        value(before, "gorgon_shared_redis_round_trips_total") + 5
    assert value(m, "gorgon_shared_redis_errors_total") == 0

    own_redis.stop()
    for _ in range(3):
        assert b"unavailable: " in get("/store/try?key=metrics-redis-ctr")
    m = scrape(srv.maddr)
    assert value(m, "gorgon_shared_redis_errors_total") >= 1
    assert value(m, "gorgon_shared_redis_reconnects_total") == 0
    own_redis.start()
    wait_for(lambda: b'"outcome": "ok"' in get("/store/try?key=metrics-redis-ctr"), timeout=scaled(10),
             what="calls to succeed once Redis is back")
    after = scrape(srv.maddr)
    assert value(after, "gorgon_shared_redis_reconnects_total") >= 1
    assert_not_lower(counters(m), counters(after))
