"""gorgon.shared and channels over a redis-server (--shared-url): what only a
server outside the process gives. Two instances and the processes modes
share one store and one set of channels; an outage is an exception the app
can catch, not a dead or hung worker; TTL and the unix socket form.

The calls themselves run against Redis in test_shared.py and
test_shared_api.py (parametrized over both backends). Each test here starts
redis-server itself (tests/e2e/conftest.py; scripts/bootstrap installs it).
"""
import contextlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import (REDIS_SERVER, SERVER_CWD, RedisServer, fetch, free_port, in_threads, run_gorgon, scaled, server_env,
                      wait_for)
from test_shared import APP, ARGS, get_json, run_pair, start_marked, stored, uid
from test_tls import make_cert


def redis_args(redis, prefix, *extra):
    return (*ARGS, "--shared-url", redis.url, "--shared-prefix", prefix, *extra)


def test_two_instances_share_counter_and_channels(server, redis_server):
    """Two servers (two processes, two ports; the second one configured from
    GORGON_SHARED_URL): 1,000 increments spread over both give exactly 1,000,
    and channel messages sent in one are received in the other, each once."""
    prefix = "two-%s:" % uid()
    a = server(APP, *redis_args(redis_server, prefix))
    b = server(APP, *ARGS, env={"GORGON_SHARED_URL": redis_server.url, "GORGON_SHARED_PREFIX": prefix})
    key = "ctr-" + uid()
    calls = [(a,), (b,)] * 4
    in_threads(lambda s: get_json(s, "/store/incr?key=%s&n=125" % key), calls)
    assert stored(a, key) == stored(b, key) == 1000

    p, q, rv = "P-" + uid(), "Q-" + uid(), "rv-" + uid()
    common = "producers=2&consumers=2&count=500&total_producers=2&rv=" + rv
    ra, rb = in_threads(lambda s, t: get_json(s, t, timeout=120), [
        (a, "/channel/mpmc?index=0&send_to=%s&recv_from=%s&%s" % (p, q, common)),
        (b, "/channel/mpmc?index=1&send_to=%s&recv_from=%s&%s" % (q, p, common))])
    assert ra["errors"] == [] and rb["errors"] == [], (ra["errors"], rb["errors"])
    assert sorted(rb["received"]) == list(range(1000))  # a's messages, each once, in b
    assert sorted(ra["received"]) == list(range(1000, 2000))  # b's messages, each once, in a


def test_two_instances_behind_nginx(server, own_redis, nginx):
    """Two instances sharing one Redis behind one nginx upstream (round-robin):
    requests alternate between them and see one counter and one set of
    channels; Redis killed mid-run: both answer with gorgon.Unavailable, no
    worker dies, and both serve over Redis again once it is back."""
    args = (*ARGS, "--shared-url", own_redis.url, "--shared-prefix", "lb-%s:" % uid(), "--shared-timeout", "0.5")
    a, b = server(APP, *args), server(APP, *args)
    ups = {"127.0.0.1:%d" % a.port: a, "127.0.0.1:%d" % b.port: b}
    front = nginx(list(ups))

    def call(target):
        r = fetch(front, target, timeout=scaled(60))
        assert r.status == 200, (target, r, r.body[:2000])
        assert r.header("X-Upstream") in ups, r
        return r.json(), r.header("X-Upstream")

    key = "ctr-" + uid()
    seen = []
    for i in range(1, 11):  # one after another: every answer is the count so far
        body, up = call("/store/try?key=" + key)
        assert (body["outcome"], body["value"], body["pid"]) == ("ok", i, ups[up].pid), body
        seen.append(up)
    assert set(seen) == set(ups), seen  # both instances counted

    key = "ctr-" + uid()
    answers = in_threads(lambda: call("/store/incr?key=%s&n=125" % key), [()] * 8)
    assert {up for _, up in answers} == set(ups)
    assert stored(a, key) == stored(b, key) == 1000

    name = uid()
    _, sent_by = call("/channel/send?name=%s&value=42" % name)
    body, got_by = call("/channel/recv?name=%s&t=10" % name)
    assert body["value"] == 42 and got_by != sent_by  # round-robin: the other instance

    own_redis.stop()
    for _ in range(4):
        body, up = call("/store/try?key=" + key)
        assert body["outcome"].startswith("unavailable: "), body
        seen.append(up)
    assert a.running() and b.running()
    own_redis.start()
    back = set()

    def both_back():
        body, up = call("/store/try?key=" + key)
        if body["outcome"] == "ok":
            back.add(up)
        return back == set(ups)
    wait_for(both_back, timeout=scaled(15), what="both instances to use Redis again")
    assert a.running() and b.running()
    for s in (a, b):
        assert "calls raise gorgon.Unavailable" in s.stderr_text() and "answers again" in s.stderr_text()


def test_processes_mode_shares(server, redis_server):
    """In --mode processes every worker is a process: over Redis, a counter is
    exact across them and a channel connects them (without --shared-url,
    gorgon.channel() refuses in this mode)."""
    s = server(APP, *redis_args(redis_server, "procs-%s:" % uid(), "--mode", "processes"))
    key, rv, n = "ctr-" + uid(), "rv-" + uid(), 2000
    a, b = run_pair(s, "/store/incr?key=%s&n=%d&rv=%s" % (key, n, rv),
                    "/store/incr?key=%s&n=%d&rv=%s" % (key, n, rv))
    assert stored(s, key) == 2 * n
    name = uid()
    bg, waiter = start_marked(s, "/channel/recv_forever?name=" + name)
    sender = get_json(s, "/channel/send?name=%s&value=7" % name)
    assert sender["worker"] != waiter
    assert bg.result()["value"] == 7
    proc = server("shared_procmode:app", "--mode", "processes", "--workers", "2",
                  "--shared-url", redis_server.url)
    assert fetch(proc, "/").json() == {"outcome": "opened", "mode": "processes"}


def test_processes_flag_shares(server, redis_server):
    """--processes 2 (one interpreter each): one counter for both processes."""
    s = server(APP, "--no-reuse-port", "--processes", "2", "--workers", "1", "--shared-url",
               redis_server.unix_url, "--shared-prefix", "p2-%s:" % uid(), workers=None)
    key, rv, n = "ctr-" + uid(), "rv-" + uid(), 2000
    a, b = run_pair(s, "/store/incr?key=%s&n=%d&rv=%s" % (key, n, rv),
                    "/store/incr?key=%s&n=%d&rv=%s" % (key, n, rv))
    assert stored(s, key) == 2 * n


def test_stop_while_a_worker_waits_in_redis(server, redis_server):
    """A worker blocked in recv() on a channel in Redis does not hang a stop."""
    s = server(APP, *redis_args(redis_server, "stop-%s:" % uid(), "--graceful-timeout", "1"))
    bg, _ = start_marked(s, "/channel/recv_forever?name=" + uid())
    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM, timeout=20) == 0, s.describe()
    assert time.monotonic() - t0 < scaled(10)
    with contextlib.suppress(BaseException):
        bg.result(5)


def test_redis_lost_and_back(server, own_redis):
    """Redis killed mid-run: calls raise gorgon.Unavailable (a ConnectionError)
    within --shared-timeout, the outage is logged once, no worker dies; once
    Redis is back the same workers use it again."""
    s = server(APP, *ARGS, "--shared-url", own_redis.url, "--shared-timeout", "0.5")
    key = "ctr-" + uid()
    assert get_json(s, "/store/try?key=" + key)["value"] == 1
    pids = {get_json(s, "/store/try?key=" + key)["pid"]}
    own_redis.stop()
    for target in ["/store/try?key=" + key] * 6 + ["/store/try?send=" + uid()]:
        r = get_json(s, target)
        assert r["outcome"].startswith("unavailable: "), r
        assert r["outcome"].endswith("(ConnectionError: True)"), r
        assert r["elapsed"] < 0.5 + scaled(1), r
    assert s.running()
    own_redis.start()  # empty: nothing was kept on disk
    box = []
    wait_for(lambda: box.append(get_json(s, "/store/try?key=" + key)) or box[-1]["outcome"] == "ok",
             timeout=scaled(10), what="calls to succeed once Redis is back")
    assert box[-1]["value"] == 1
    pids.add(box[-1]["pid"])
    assert s.running() and pids == {s.pid}
    log = s.stderr_bytes().decode()
    assert log.count("calls raise gorgon.Unavailable") == 1, log
    assert "answers again" in log, log


def test_redis_down_at_start():
    """No Redis at the named address: one clear line and exit 1, before any
    worker starts."""
    port = free_port()
    out = run_gorgon(APP, "--bind", "127.0.0.1:%d" % free_port(), "--shared-url",
                     "redis://127.0.0.1:%d/0" % port, "--shared-timeout", "1")
    assert out.returncode == 1, out
    err = out.stderr.decode()
    lines = [x for x in err.splitlines() if "--shared-url" in x]
    assert len(lines) == 1 and "cannot connect to Redis at 127.0.0.1:%d" % port in lines[0], err
    assert "worker" not in err.lower(), err


def test_shared_wait_gives_up():
    """--shared-wait: no Redis at start, one line saying it waits, retries,
    then the clear error and exit 1 once the time is up (not at once)."""
    port = free_port()
    t0 = time.monotonic()
    out = run_gorgon(APP, "--bind", "127.0.0.1:%d" % free_port(), "--shared-url",
                     "redis://127.0.0.1:%d/0" % port, "--shared-timeout", "0.5", "--shared-wait", "1.5")
    elapsed = time.monotonic() - t0
    assert out.returncode == 1, out
    err = out.stderr.decode()
    lines = [x for x in err.splitlines() if "--shared-url" in x]
    assert len(lines) == 2, err
    assert "cannot connect to Redis at 127.0.0.1:%d" % port in lines[0], err
    assert "trying again for up to 1.5s (--shared-wait)" in lines[0], err
    assert "gave up after 1.5s" in lines[1], err
    assert elapsed >= 1.5, elapsed
    assert "worker" not in err.lower(), err
    out = run_gorgon(APP, "--shared-url", "redis://127.0.0.1:%d/0" % port, "--shared-wait", "-1")
    assert out.returncode == 2 and b"--shared-wait must be a number of seconds, at least 0" in out.stderr, out


def test_shared_wait_until_redis_comes(server, own_redis):
    """--shared-wait (here from GORGON_SHARED_WAIT): Redis started after
    gorgon is found by a retry, and the server serves over it."""
    own_redis.stop()
    s = server(APP, *ARGS, "--shared-url", own_redis.url, "--shared-timeout", "0.5",
               env={"GORGON_SHARED_WAIT": str(scaled(60))}, wait=None)
    wait_for(lambda: "trying again for up to" in s.stderr_text(), timeout=scaled(20),
             what="the line saying gorgon waits for Redis")
    assert s.running()
    own_redis.start()
    s.wait_ready(timeout=scaled(30))
    get_json(s, "/store/set?key=k1&value=3")
    assert own_redis.command("EXISTS", b"gorgon:k:s\x02\x00\x00\x00k1") == b":1"
    log = s.stderr_text()
    assert log.count("trying again for up to") == 1, log
    assert "answers after" in log, log


def test_bad_url_is_refused():
    out = run_gorgon(APP, "--shared-url", "http://localhost:6379")
    assert out.returncode == 2 and b"--shared-url: expected redis://" in out.stderr, out
    out = run_gorgon(APP, "--shared-url", "redis://h:99999/0")
    assert out.returncode == 1 and b"--shared-url: the port must be a number from 1 to 65535" in out.stderr, out


SCRIPT = textwrap.dedent('''
    import sys, time
    import gorgon
    from gorgon import _gorgon
    _gorgon._shared_connect(sys.argv[1], "ttl-test:", timeout=2)
    s = gorgon.shared
    s.clear()
    # set with a ttl expires; without one it stays
    s.set("t", "x", ttl=0.3)
    s.set("keep", "y")
    assert s.get("t") == "x" and "t" in s
    # incr on a missing key creates it with the ttl; an existing key keeps its expiry
    assert s.incr("n", 5, ttl=0.3) == 5
    s.set("p", 1)
    assert s.incr("p", ttl=0.3) == 2
    assert s.cas("c", None, 1, ttl=0.3) is True and s.setdefault("d", 4, ttl=0.3) == 4
    time.sleep(0.6)
    for k in ("t", "n", "c", "d"):
        assert s.get(k) is None and k not in s, k
    assert s.get("keep") == "y" and s.get("p") == 2
    assert sorted(s.keys()) == ["keep", "p"] and len(s) == 2
    # another prefix is another store
    _gorgon._shared_connect(sys.argv[1], "other:")
    assert s.get("keep") is None and len(s) == 0
    # Redis's INCRBY works on 64-bit ints: beyond, OverflowError, nothing changed
    s.set("big", 2**63 - 1)
    try:
        s.incr("big")
    except OverflowError:
        pass
    else:
        raise AssertionError("incr past int64 did not raise")
    assert s.get("big") == 2**63 - 1
    s.set("huge", 10**30)
    assert s.get("huge") == 10**30 and s.cas("huge", 10**30, 10**31) is True
    # nothing at this port: Unavailable, at once
    _gorgon._shared_connect(sys.argv[2], "x:", timeout=1)
    t = time.monotonic()
    try:
        s.get("a")
    except gorgon.Unavailable as e:
        assert "cannot connect" in str(e), e
    else:
        raise AssertionError("no Unavailable")
    assert time.monotonic() - t < 1.5
    print("ok")
''')


def test_ttl_prefix_and_limits_over_unix_socket(redis_server, tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, redis_server.unix_url,
                          "redis://127.0.0.1:%d" % free_port()], env=server_env(),
                         capture_output=True, text=True, timeout=scaled(30), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok", out.stdout


def test_keys_are_namespaced(redis_server, server):
    prefix = "ns-%s:" % uid()
    s = server(APP, *redis_args(redis_server, prefix))
    get_json(s, "/store/set?key=k1&value=3")
    reply = redis_server.command("EXISTS", prefix.encode() + b"k:s\x02\x00\x00\x00k1")
    assert reply == b":1", reply
    assert get_json(s, "/store/get?key=k1")["value"] == 3


def build_has_tls():
    out = subprocess.run([sys.executable, "-c", "from gorgon import _gorgon; print(_gorgon._redis_tls)"],
                         cwd=SERVER_CWD, env=server_env(), capture_output=True, text=True, timeout=scaled(30))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


def test_rediss_refused_without_tls_support():
    """A build whose hiredis has no TLS library refuses rediss:// at start,
    saying why, with exit 1."""
    if build_has_tls():
        pytest.skip("this build has hiredis's TLS support (test_rediss covers rediss://)")
    out = run_gorgon(APP, "--bind", "127.0.0.1:%d" % free_port(), "--shared-url",
                     "rediss://127.0.0.1:%d/0" % free_port())
    assert out.returncode == 1, out
    assert b"--shared-url: rediss:// needs hiredis with TLS support" in out.stderr, out.stderr


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server with a TLS port that requires a client certificate,
    certificates made with the openssl command; .tls_port, .certs."""
    if REDIS_SERVER is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and the openssl command (scripts/bootstrap installs both)")
    d = tmp_path / "certs"
    d.mkdir()
    make_cert(d, "ca", "gorgon test CA", None)
    make_cert(d, "server", "localhost", "ca")  # for localhost and 127.0.0.1
    make_cert(d, "client", "test client", "ca")
    other = tmp_path / "other"
    other.mkdir()
    make_cert(other, "ca", "another CA", None)
    port = free_port()
    r = RedisServer(tmp_path, ["--tls-port", port, "--tls-cert-file", d / "server.pem", "--tls-key-file",
                               d / "server.key", "--tls-ca-cert-file", d / "ca.pem"]).start()
    r.tls_port, r.certs, r.other_ca = port, d, other / "ca.pem"
    yield r
    r.close()


def test_rediss(server, tls_redis):
    """rediss://: gorgon.shared and channels over TLS, the server checked
    against ?ca= and a client certificate given with ?cert= and ?key=; a
    server whose certificate another CA signed is refused at start."""
    if not build_has_tls():
        pytest.skip("this build's hiredis has no TLS support (libhiredis_ssl, hiredis 1.0 or later; "
                    "Debian 13's has it: scripts/test-debian runs this test)")
    c = tls_redis.certs
    query = "?ca=%s&cert=%s&key=%s" % (c / "ca.pem", c / "client.pem", c / "client.key")
    url = "rediss://127.0.0.1:%d/0%s" % (tls_redis.tls_port, query)
    s = server(APP, *ARGS, "--shared-url", url)
    assert "Redis at 127.0.0.1:%d" % tls_redis.tls_port in s.stderr_text()
    get_json(s, "/store/set?key=k1&value=3")
    assert tls_redis.command("EXISTS", b"gorgon:k:s\x02\x00\x00\x00k1") == b":1"
    key = "ctr-" + uid()
    assert [get_json(s, "/store/try?key=" + key)["value"] for _ in range(3)] == [1, 2, 3]
    name = uid()
    get_json(s, "/channel/send?name=%s&value=5" % name)
    assert get_json(s, "/channel/recv?name=%s&t=5" % name)["value"] == 5

    bad = "rediss://127.0.0.1:%d/0?ca=%s" % (tls_redis.tls_port, tls_redis.other_ca)
    out = run_gorgon(APP, "--bind", "127.0.0.1:%d" % free_port(), "--shared-url", bad, "--shared-timeout", "2")
    assert out.returncode == 1, out
    assert b"TLS to Redis at 127.0.0.1:%d: the server's certificate: " % tls_redis.tls_port in out.stderr, out.stderr
