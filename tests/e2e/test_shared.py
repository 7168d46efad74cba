"""gorgon.shared and gorgon.channel across worker interpreters (tests/apps/shared_app.py).

The server listens on one shared socket (--no-reuse-port), from which only an
idle worker accepts. Tests that need two workers at once start a request that
keeps one worker busy, wait until it has said so in the store, and then talk
to the other worker.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import REPO, fetch, in_threads, scaled, server_env, wait_for

APP = "shared_app:app"
ARGS = ("--workers", "2", "--no-reuse-port")


@pytest.fixture(params=["local", "redis"])
def srv(request, shared_server):
    """The server, with the in-process store and again over a redis-server."""
    if request.param == "local":
        s = shared_server(APP, *ARGS)
    else:
        r = request.getfixturevalue("redis_server")
        s = shared_server(APP, *ARGS, "--shared-url", r.url, "--shared-prefix", "test-shared:")
    s.backend = request.param
    return s


def sized(server, n, over_redis):
    """n for the in-process store, a smaller count over Redis (a round trip
    per call)."""
    return n if server.backend == "local" else over_redis


def uid():
    return uuid.uuid4().hex[:12]


def get_json(server, target, timeout=30):
    r = fetch(server, target, timeout=timeout)
    assert r.status == 200, (target, r, r.body[:2000])
    return r.json()


def stored(server, key):
    return get_json(server, "/store/get?key=" + key)["value"]


class Background:
    """One request running in a thread; .result() joins it."""

    def __init__(self, server, target, timeout=60):
        self.out = {}

        def run():
            try:
                self.out["json"] = get_json(server, target, timeout)
            except BaseException as e:  # noqa: BLE001 - re-raised in result()
                self.out["error"] = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout=60):
        self.thread.join(scaled(timeout))
        assert not self.thread.is_alive(), "background request still running"
        if "error" in self.out:
            raise self.out["error"]
        return self.out["json"]


def wait_stored(server, key, what):
    """Waits until key holds a value (a worker id); returns it."""
    box = []

    def check():
        v = stored(server, key)
        if v is not None:
            box.append(v)
        return v is not None

    wait_for(check, timeout=20, what=what)
    return box[0]


def start_marked(server, target, timeout=60, ticked=False):
    """Starts target (which stores its worker id under `mark` on arrival) and
    waits until it is running (ticked: until its loop has ticked 10 times
    while it waits); returns (Background, worker id)."""
    mark = "mark-" + uid()
    bg = Background(server, target + "&mark=" + mark, timeout)
    worker = wait_stored(server, mark, "the first request to arrive")
    if ticked:
        wait_stored(server, mark + ":ticked", "the waiting loop to tick")
    return bg, worker


@contextlib.contextmanager
def holding(server, prefix=None):
    """Keeps one worker busy; requests made meanwhile go to the other."""
    key = "hold-" + uid()
    target = "/hold/?key=" + key + ("&prefix=" + prefix if prefix else "")
    bg = Background(server, target)
    held = wait_stored(server, key + ":held", "a worker to be held")
    info = {"held": held}
    try:
        yield info
    finally:
        get_json(server, "/release/?key=" + key)
        info.update(bg.result())


def run_pair(server, target_a, target_b, timeout=120):
    """Runs two requests at once, one on each worker."""
    bg, worker_a = start_marked(server, target_a, timeout)
    b = get_json(server, target_b, timeout)
    a = bg.result(timeout)
    assert a["worker"] == worker_a and b["worker"] != worker_a, (a["worker"], b["worker"], worker_a)
    return a, b


def overlap(a, b):
    return min(a["end"], b["end"]) - max(a["start"], b["start"])


# ---------------------------------------------------------------- worker facts


def test_worker_facts(srv):
    with holding(srv) as h:
        other = get_json(srv, "/store/facts")
    direct = [get_json(srv, "/store/facts") for _ in range(3)]
    for f in [other] + direct:
        assert f["worker_count"] == 2 and f["mode"] == "interpreters", f
        assert f["worker_id"] in (0, 1), f
    assert other["worker_id"] != h["held"]


def test_main_interpreter_facts_and_import_without_extension(tmp_path):
    code = ("import gorgon; print(gorgon.worker_id, gorgon.worker_count, gorgon.mode); "
            "gorgon.shared.set('k', (1, 2)); print(gorgon.shared.get('k'))")
    out = subprocess.run([sys.executable, "-c", code], env=server_env(), capture_output=True,
                         text=True, timeout=scaled(30), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["None 0 main", "(1, 2)"]
    # The package without its extension still imports; the names fail on use.
    pkg = tmp_path / "gorgon"
    pkg.mkdir()
    for f in (REPO / "gorgon").glob("*.py"):
        shutil.copy(f, pkg)
    code = ("import gorgon; print(gorgon.__version__)\n"
            "try:\n    gorgon.shared\nexcept ImportError:\n    print('no extension')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=scaled(30), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[1] == "no extension"


# ---------------------------------------------------------------- the store


@pytest.mark.tsan
def test_incr_from_two_workers_at_once_is_exact(srv):
    key, rv, n = "ctr-" + uid(), "rv-" + uid(), sized(srv, 300000, 20000)
    a, b = run_pair(srv, "/store/incr?key=%s&n=%d&rv=%s" % (key, n, rv),
                    "/store/incr?key=%s&n=%d&rv=%s" % (key, n, rv))
    assert overlap(a, b) > 0, "the two workers did not run at the same time: %r %r" % (a, b)
    assert stored(srv, key) == 2 * n
    assert max(a["last"], b["last"]) == 2 * n


def test_incr_under_load_is_exact(srv):
    key = "load-" + uid()
    n = sized(srv, 5000, 500)
    results = in_threads(lambda: get_json(srv, "/store/incr?key=%s&n=%d" % (key, n)), [()] * 16)
    assert stored(srv, key) == 16 * n
    assert {r["worker"] for r in results} <= {0, 1}


def test_cas_loops_from_two_workers_are_exact(srv):
    key, rv, n = "cas-" + uid(), "rv-" + uid(), sized(srv, 100000, 3000)
    a, b = run_pair(srv, "/store/cas?key=%s&n=%d&rv=%s" % (key, n, rv),
                    "/store/cas?key=%s&n=%d&rv=%s" % (key, n, rv))
    assert overlap(a, b) > 0
    assert stored(srv, key) == 2 * n


def test_values_round_trip_between_workers(srv):
    prefix = "rt-" + uid() + "-"
    written = get_json(srv, "/store/roundtrip?phase=set&prefix=" + prefix)
    assert written["bad"] == []
    # The holder checks before it holds; the other worker checks meanwhile.
    with holding(srv, prefix) as h:
        other = get_json(srv, "/store/roundtrip?prefix=" + prefix)
    assert other["bad"] == [] and h["bad"] == [], (other, h)
    assert other["worker"] != h["held"]


def test_ttl_expires_for_every_reader(srv):
    key = "ttl-" + uid()
    get_json(srv, "/store/set?key=%s&value=5&ttl=%s" % (key, scaled(0.5)))
    first = get_json(srv, "/store/get?key=" + key)
    assert first["value"] == 5 and first["present"] and first["listed"]
    time.sleep(scaled(0.5) + 0.2)
    with holding(srv):
        other = get_json(srv, "/store/get?key=" + key)
    again = get_json(srv, "/store/get?key=" + key)
    for r in (other, again):
        assert r["value"] is None and not r["present"] and not r["listed"], r


def test_unsupported_types_raise_type_error(srv):
    r = get_json(srv, "/store/types")
    assert r["failures"] == []


def test_size_bound(server):
    s = server(APP, *ARGS, "--shared-max-bytes", "1000000")
    r = get_json(s, "/store/fill?prefix=a&size=10000")
    assert 90 <= r["stored"] < 100, r
    assert "--shared-max-bytes" in r["message"] and "full" in r["message"], r["message"]
    assert r["intact"] and r["replaced"] == "kept", r
    assert r["stats"]["used_bytes"] <= r["stats"]["max_bytes"] == 1000000
    # Full for every worker; clearing gives the room back.
    with holding(s):
        other = get_json(s, "/store/fill?prefix=b&size=10000")
    assert other["stored"] == 0 and other["intact"]
    get_json(s, "/store/clear")
    assert get_json(s, "/store/fill?prefix=c&size=10000")["stored"] >= 90


def test_shared_max_bytes_from_env(server):
    s = server(APP, *ARGS, env={"GORGON_SHARED_MAX_BYTES": "200000"})
    r = get_json(s, "/store/fill?prefix=e&size=10000")
    assert 15 <= r["stored"] < 20, r


# ---------------------------------------------------------------- channels


@pytest.mark.tsan
def test_channel_100k_messages_between_workers(srv):
    """100,000 messages (10,000 over Redis), none lost or duplicated, every
    one from one worker to the other: worker A's two producer threads send into channel P, which
    worker B's two consumer threads drain, and B's two producers send into Q
    for A's two consumers (capacity 256: senders wait)."""
    p, q, rv = "P-" + uid(), "Q-" + uid(), "rv-" + uid()
    count = sized(srv, 25000, 2500)
    common = "producers=2&consumers=2&count=%d&total_producers=2&rv=%s" % (count, rv)
    a, b = run_pair(srv, "/channel/mpmc?index=0&send_to=%s&recv_from=%s&%s" % (p, q, common),
                    "/channel/mpmc?index=1&send_to=%s&recv_from=%s&%s" % (q, p, common), timeout=300)
    assert a["errors"] == [] and b["errors"] == [], (a["errors"], b["errors"])
    half = 2 * count
    assert len(a["received"]) == len(b["received"]) == half, (len(a["received"]), len(b["received"]))
    assert sorted(b["received"]) == list(range(half))  # A's messages, each once
    assert sorted(a["received"]) == list(range(half, 2 * half))  # B's messages, each once
    assert overlap(a, b) > 0


def test_recv_timeout_returns_in_time(srv):
    r = get_json(srv, "/channel/recv_timeout?name=%s&t=0.3" % uid())
    assert r["outcome"] == "empty"
    assert 0.3 <= r["elapsed"] < 0.3 + scaled(5), r  # it waited its timeout, and returned


def test_send_timeout_on_full_channel(srv):
    r = get_json(srv, "/channel/send_timeout?name=%s&t=0.3" % uid())
    assert r["outcome"] == "full"
    assert 0.3 <= r["elapsed"] < 0.3 + scaled(5), r  # it waited its timeout, and returned


def test_blocked_recv_wakes_on_send_from_other_worker(srv):
    name = uid()
    bg, waiter = start_marked(srv, "/channel/recv_forever?name=" + name)
    sender = get_json(srv, "/channel/send?name=%s&value=7" % name)
    assert sender["worker"] != waiter
    assert bg.result()["value"] == 7


def test_async_recv_timeout_does_not_block_the_loop(srv):
    r = get_json(srv, "/channel/async_recv?name=%s&t=0.3" % uid())
    assert r["outcome"] == "empty", r
    assert 0.3 <= r["elapsed"] < 0.3 + scaled(5), r  # it waited its timeout, and returned
    assert r["ticks"] >= 2, r  # ~30 ticks of 10 ms if the loop ran; none if it was blocked


@pytest.mark.parametrize("timeout", ["&t=30", ""], ids=["timeout", "no-timeout"])
def test_async_recv_wakes_on_send_from_other_worker(srv, timeout):
    name = uid()
    bg, waiter = start_marked(srv, "/channel/async_recv?name=%s%s" % (name, timeout), ticked=True)
    assert get_json(srv, "/channel/send?name=%s&value=42" % name)["worker"] != waiter
    r = bg.result()
    assert r["outcome"] == "got 42", r
    assert r["ticks"] >= 10 and r["elapsed"] < scaled(10), r


def test_async_send_waits_for_room_from_other_worker(srv):
    name = uid()
    bg, waiter = start_marked(srv, "/channel/async_send?name=%s&capacity=3&t=30" % name, ticked=True)
    r = get_json(srv, "/channel/recv?name=%s&t=5" % name)
    assert r["value"] == 0 and r["worker"] != waiter
    out = bg.result()
    assert out["outcome"] == "got None" and out["ticks"] >= 10, out


def test_async_send_timeout_on_full_channel(srv):
    r = get_json(srv, "/channel/async_send?name=%s&capacity=2&t=0.3" % uid())
    assert r["outcome"] == "full", r
    assert 0.3 <= r["elapsed"] < 0.3 + scaled(5), r
    assert r["ticks"] >= 2, r  # the loop ran while send_async waited


def test_async_many_waiters_one_loop(srv):
    r = get_json(srv, "/channel/async_many?name=%s&n=2000&waiters=5" % uid())
    assert r["got"] == list(range(2000))


def test_stop_while_a_worker_waits_for_ever(server):
    """A worker blocked in recv() with no timeout does not hang the server:
    it leaves after the graceful timeout, without a crash."""
    s = server(APP, *ARGS, "--graceful-timeout", "1")
    name = uid()
    bg, _ = start_marked(s, "/channel/recv_forever?name=" + name)
    t0 = time.monotonic()
    code = s.stop(signal.SIGTERM, timeout=20)
    assert code == 0, s.describe()
    assert time.monotonic() - t0 < scaled(10)
    with contextlib.suppress(BaseException):
        bg.result(5)


# ---------------------------------------------------------------- the Flask example


def test_flask_example(server):
    """examples/flask_shared (where Flask is installed: the framework tier)."""
    pytest.importorskip("flask")
    s = server("app:app", "--chdir", str(REPO / "examples" / "flask_shared"), *ARGS)
    first = fetch(s, "/")
    assert first.status == 200 and first.header("X-Cache") == "miss"
    assert fetch(s, "/").header("X-Cache") == "hit"
    codes = [fetch(s, "/api/limited").status for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    hits = [fetch(s, "/api/hits").json()["hits"] for _ in range(3)]
    assert hits == [1, 2, 3]
    assert fetch(s, "/api/max?n=5").json()["max"] == 5
    assert fetch(s, "/api/max?n=3").json()["max"] == 5


@pytest.mark.parametrize("mode", ["processes", "interpreters"])
def test_channels_refuse_clearly_in_processes_mode(server, mode):
    srv = server("shared_procmode:app", "--mode", mode, "--workers", "2")
    j = fetch(srv, "/").json()
    assert j["mode"] == mode
    if mode == "processes":
        assert j["outcome"].startswith("RuntimeError: gorgon channels connect the interpreters of one process")
    else:
        assert j["outcome"] == "opened"
