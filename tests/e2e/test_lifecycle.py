"""Start-up failures, graceful stop on SIGTERM/SIGINT, the CPython hazards behind
the workarounds (src/interp/interp.h) on the Python that runs the suite."""
import signal
import sys
import threading
import time

import pytest

from conftest import (CRASH_CODES, Conn, build_request, connect, fetch, in_threads, read_lines, scaled,
                      wait_for)


def slow_request_in_thread(srv, seconds, marker):
    result = {}

    def run():
        try:
            result["resp"] = fetch(srv, "/slow?s=%s&marker=%s" % (seconds, marker), timeout=30)
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: read_lines(marker), 10, what="the slow request to start")
    return t, result


@pytest.mark.tsan
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_finishes_in_flight_request(server, tmp_path, sig):
    srv = server("router:app", "--workers", "2")
    t, result = slow_request_in_thread(srv, 2, tmp_path / "started")
    t0 = time.monotonic()
    srv.send_signal(sig)
    rc = srv.wait_exit(30)
    t.join(10)
    assert "error" not in result, "in-flight request failed: %r" % result.get("error")
    r = result["resp"]
    assert r.status == 200 and r.body == b"slept 2.0\n"
    assert rc == 0, "exit code %s\n%s" % (rc, srv.describe())
    assert time.monotonic() - t0 > 1.0, "server exited before the request finished"


def test_backlog_after_sigterm_is_answered_and_closed(server, tmp_path):
    """A client that connected while the only worker was busy sits in the
    kernel's queue when SIGTERM comes: it gets its answer (with
    Connection: close), never a reset, and the server still exits 0. A client
    that connects after the stop began is refused, not queued."""
    srv = server("router:app", "--workers", "1")
    t, result = slow_request_in_thread(srv, 2, tmp_path / "started")
    queued = Conn(srv)  # accepted by the kernel, not yet by the busy worker
    srv.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in srv.stderr_text(), 10, what="the stop to begin")
    r = queued.request("GET", "/hello")
    assert r.status == 200 and r.has_token("connection", "close"), r
    assert queued.closed_within(scaled(5))
    queued.close()
    with pytest.raises(ConnectionRefusedError):
        connect(srv.addr, timeout=scaled(10)).close()
    assert srv.wait_exit(30) == 0
    t.join(10)
    assert result.get("resp") is not None and result["resp"].status == 200, result
    with pytest.raises(ConnectionRefusedError):
        connect(srv.addr, timeout=2).close()  # and nothing listens afterwards


@pytest.mark.tsan
def test_idle_keep_alive_connections_closed_at_stop(server):
    srv = server("router:app", "--workers", "2", "--keep-alive", "30")
    conns = [Conn(srv) for _ in range(4)]
    try:
        for c in conns:
            assert c.request("GET", "/hello").status == 200
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        for c in conns:
            assert c.closed_within(scaled(5)), "idle keep-alive connection left open at stop"
        assert srv.wait_exit(10) == 0
        assert time.monotonic() - t0 < scaled(6)
    finally:
        for c in conns:
            c.close()


def test_in_flight_keep_alive_connection_closed_after_response(server, tmp_path):
    srv = server("router:app", "--workers", "1", "--keep-alive", "30")
    marker = tmp_path / "started"
    with Conn(srv) as c:
        c.send(build_request("GET", "/slow?s=1&marker=%s" % marker, host="x"))
        wait_for(lambda: read_lines(marker), 10, what="the slow request to start")
        srv.send_signal(signal.SIGTERM)
        assert c.response().status == 200
        assert c.closed_within(scaled(5))
    assert srv.wait_exit(10) == 0


def test_sigterm_idle_server_exits_0_quickly(server):
    srv = server("hello:app", "--workers", "2")
    assert fetch(srv, "/").status == 200
    t0 = time.monotonic()
    assert srv.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < scaled(5)


def test_graceful_timeout_bounds_the_wait(server, tmp_path):
    srv = server("router:app", "--workers", "1", "--graceful-timeout", "1")
    t, result = slow_request_in_thread(srv, 20, tmp_path / "started")
    t0 = time.monotonic()
    rc = srv.stop(signal.SIGTERM, timeout=15)
    assert time.monotonic() - t0 < scaled(6), "graceful timeout of 1s not honoured"
    assert rc == 0, "exit code %s\n%s" % (rc, srv.describe())


@pytest.mark.parametrize("sig,mode", [(signal.SIGINT, "interpreters"), (signal.SIGQUIT, "interpreters"),
                                      (signal.SIGINT, "processes")],
                         ids=["SIGINT", "SIGQUIT", "SIGINT-processes"])
def test_second_sigint_exits_at_once(server, tmp_path, sig, mode):
    """SIGQUIT is as SIGINT (README, Signals); with worker processes the
    supervisor passes the second one on and still exits 130."""
    srv = server("router:app", "--workers", "1", "--graceful-timeout", "30", "--mode", mode)
    slow_request_in_thread(srv, 20, tmp_path / "started")
    srv.send_signal(sig)
    wait_for(lambda: "%s received" % sig.name in srv.stderr_text(), 10, what="the first %s" % sig.name)
    assert srv.running(), "first %s did not wait for the in-flight request" % sig.name
    t0 = time.monotonic()
    srv.send_signal(sig)
    rc = srv.wait_exit(10)
    assert time.monotonic() - t0 < scaled(3), "second %s did not stop the server at once" % sig.name
    assert rc == 130, "exit code %s (130 after a second %s, as documented)\n%s" % (rc, sig.name, srv.describe())


# -- start-up failures -------------------------------------------------------

def failed_start(server, app, *args, env=None):
    srv = server(app, *args, env=env, wait=None)
    rc = srv.wait_exit(30)
    return rc, srv.stderr_text()


def assert_short_error(text):
    lines = text.splitlines()
    assert "double free" not in text and "Segmentation" not in text and "core dumped" not in text
    if "Traceback (most recent call last)" in text:
        i = next(n for n, l in enumerate(lines) if "Traceback (most recent call last)" in l)
        tb = lines[i:]
        assert len(tb) <= 12, "a traceback wall of %d lines:\n%s" % (len(tb), text)
    assert len(lines) <= 40, "%d lines of output for one import error:\n%s" % (len(lines), text)


def test_import_error_exits_1_with_short_message(server):
    rc, text = failed_start(server, "broken_import:app", "--workers", "2")
    assert rc == 1, "exit code %s\n%s" % (rc, text)
    assert "broken_import" in text, text
    assert "gorgon_test_missing_dependency" in text, text
    assert "ModuleNotFoundError" in text or "No module named" in text, text
    assert_short_error(text)


def test_missing_module_exits_1(server):
    rc, text = failed_start(server, "gorgon_no_such_app_module:app")
    assert rc == 1, "exit code %s\n%s" % (rc, text)
    assert "gorgon_no_such_app_module" in text
    assert_short_error(text)


def test_missing_attribute_fails_cleanly(server):
    rc, text = failed_start(server, "hello:no_such_attribute")
    assert rc != 0 and rc not in CRASH_CODES, "exit code %s\n%s" % (rc, text)
    assert "no_such_attribute" in text
    assert_short_error(text)


def test_single_phase_extension_exits_1(server):
    rc, text = failed_start(server, "singlephase:app", "--workers", "2", "--mode", "interpreters")
    assert rc == 1, "exit code %s (expected 1, no crash)\n%s" % (rc, text)
    assert "_testsinglephase" in text, text
    assert_short_error(text)


# -- the datetime hazard -------------------------------------------------------

def start_stop_cycles(server, n, env=None, tolerate=False):
    """n times: start dtsql:app with 2 workers, 8 requests, SIGTERM.

    Returns the exit codes. With tolerate=True a cycle that fails to start or
    to answer is recorded (as a string) instead of failing the test."""
    codes = []
    for _ in range(n):
        srv = server("dtsql:app", "--workers", "2", env=env, wait=None)
        try:
            srv.wait_ready()
            for _ in range(2):  # concurrent requests, so that both workers use datetime
                for j in in_threads(lambda: fetch(srv, "/").json(), [()] * 4):
                    assert j["one"] == 1 and j["now"], j
        except BaseException as e:  # noqa: BLE001 - pytest.fail raises a BaseException
            if not tolerate:
                raise
            srv.kill()
            codes.append("failed: %s (exit %s)" % (str(e).splitlines()[0], srv.proc.poll()))
            continue
        codes.append(srv.stop(signal.SIGTERM, timeout=20))
    return codes


def test_datetime_sqlite_start_stop_cycles(server):
    codes = start_stop_cycles(server, 10)
    assert codes == [0] * 10, codes


@pytest.mark.stress
def test_datetime_sqlite_start_stop_cycles_stress(server):
    codes = start_stop_cycles(server, 50)
    assert codes == [0] * 50, codes


BOTH_OFF = {"GORGON_NO_DATETIME_WORKAROUND": "1", "GORGON_NO_END_ORDER_WORKAROUND": "1"}
# The versions where the crash was measured, and the workarounds apply
# (GN_DATETIME_HAZARD in src/interp/interp.h).
DATETIME_HAZARD = sys.version_info < (3, 14)


@pytest.mark.stress
@pytest.mark.skipif(not DATETIME_HAZARD, reason="no datetime hazard on 3.14+: test_no_datetime_hazard_since_3_14")
def test_datetime_workarounds_matter(server):
    """Shows why the workarounds exist (src/interp/interp.h): with both off, a
    datetime/sqlite3 app with 2 workers aborted at shutdown in 13 of 20 runs
    on 3.13.0 here. Passes when at least one of 20 cycles failed (the chance
    that none does, at that rate, is about 1e-9)."""
    codes = start_stop_cycles(server, 20, env=BOTH_OFF, tolerate=True)
    bad = [c for c in codes if c != 0]
    assert bad, "20 cycles without either workaround all exited 0: %r" % codes


@pytest.mark.skipif(DATETIME_HAZARD, reason="3.13 has the datetime hazard: test_datetime_workarounds_matter (stress)")
def test_no_datetime_hazard_since_3_14(server):
    """The hazard's absence where the workarounds are off (3.14.10 and 3.15.2
    measured): the same 20 cycles, with the switches off too, all exit 0."""
    codes = start_stop_cycles(server, 20, env=BOTH_OFF, tolerate=True)
    assert codes == [0] * 20, codes


@pytest.mark.stress
@pytest.mark.parametrize("off", ["GORGON_NO_DATETIME_WORKAROUND", "GORGON_NO_END_ORDER_WORKAROUND"])
def test_either_workaround_alone_suffices(server, off):
    codes = start_stop_cycles(server, 20, env={off: "1"})
    assert codes == [0] * 20, codes


# -- the other workarounds, switched off ----------------------------------------
# Workaround 3 (src/interp/interp.h): an interpreter that failed to import the
# application is kept, and the process leaves with _exit() instead of
# finalizing. Workaround 5: a worker thread's _DummyThread is dropped before its
# interpreter ends. Both apply on 3.13 only (GN_FAILED_IMPORT_HAZARD,
# GN_DUMMY_THREAD_HAZARD), where they were measured; these tests switch them
# off and show, on the Python that runs the suite, whether the hazard is there.
FAILED_IMPORT_OFF = {"GORGON_NO_FAILED_IMPORT_WORKAROUND": "1"}
CRASH_TEXT = ("double free", "corruption", "Segmentation", "Fatal Python error", "core dumped", "Aborted")


@pytest.mark.parametrize("app, module", [("singlephase:app", "_testsinglephase"),
                                         ("refuses_pyo3:app", "watchfiles._rust_notify")])
def test_failed_import_without_the_workaround(server, app, module):
    """A module that refuses sub-interpreters (single-phase init; PyO3), the
    failed interpreter ended and Python finalized: 5 starts, each exits 1
    with the one-line reason and no crash (3.13.0, 3.13.5, 3.14.10, 3.15.2)."""
    for _ in range(5):
        rc, text = failed_start(server, app, "--workers", "2", "--mode", "interpreters", env=FAILED_IMPORT_OFF)
        assert rc == 1, "exit code %s (expected 1, no crash)\n%s" % (rc, text)
        assert module in text and "does not support loading in subinterpreters" in text, text
        assert not [w for w in CRASH_TEXT if w in text], text
        assert_short_error(text)


REFUSES_AFTER_RELOAD = '''\
import os
if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "refuse")):
    import _testsinglephase  # noqa: F401
from dummy_thread import app  # noqa: F401
'''


@pytest.mark.parametrize("env", [None, FAILED_IMPORT_OFF], ids=["workaround", "off"])
def test_failed_reload_of_a_refusing_module_then_stop(server, tmp_path, env):
    """A reload whose new code refuses sub-interpreters: the old workers go on
    serving, and the stop that follows exits 0 with no crash, whether the
    failed interpreter was kept (and the process left without finalizing) or
    ended at once."""
    (tmp_path / "turns.py").write_text(REFUSES_AFTER_RELOAD)
    srv = server("turns:app", "--workers", "2", "--mode", "interpreters", "--pythonpath", str(tmp_path), env=env)
    assert fetch(srv, "/").body == b"_DummyThread"
    (tmp_path / "refuse").write_text("")
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in srv.stderr_text(), scaled(30), what="'reload failed'")
    for _ in range(4):
        assert fetch(srv, "/").status == 200
    rc = srv.stop(signal.SIGTERM, timeout=20)
    text = srv.stderr_text()
    assert rc == 0, "exit code %s\n%s" % (rc, text)
    assert "_testsinglephase" in text and not [w for w in CRASH_TEXT if w in text], text


@pytest.mark.parametrize("mode", ["interpreters", "threads"])
@pytest.mark.parametrize("env", [None, {"GORGON_NO_DUMMY_THREAD_WORKAROUND": "1"}], ids=["workaround", "off"])
def test_dummy_thread_ends_quietly(server, mode, env):
    """Workers that called threading.current_thread() (a _DummyThread each):
    the stop exits 0 and prints nothing from _DeleteDummyThreadOnDel: with
    the workaround everywhere, without it from 3.14 on. On 3.13 the
    traceback can still show without it (seen under ASan's slower teardown),
    which is why it stays on there; only the exit code is asserted then."""
    srv = server("dummy_thread:app", "--workers", "2", "--mode", mode, env=env)
    for _ in range(2):  # concurrent requests, so that both workers make one
        assert [r.body for r in in_threads(lambda: fetch(srv, "/"), [()] * 4)] == [b"_DummyThread"] * 4
    rc = srv.stop(signal.SIGTERM, timeout=20)
    text = srv.stderr_text()
    assert rc == 0, "exit code %s\n%s" % (rc, text)
    if env is None or sys.version_info >= (3, 14):
        assert "Exception ignored" not in text and "DummyThread" not in text, text
