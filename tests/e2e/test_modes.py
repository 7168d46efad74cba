"""Execution modes: interpreters, processes, threads, --processes P x N, auto
(with its probe in a throwaway child) and the pure-Python fallback."""
import os
import re
import shutil
import signal
import sysconfig
import time

import pytest

from conftest import (CRASH_CODES, SANITIZED, fetch, in_threads, scaled, wait_for)
from conftest import child_pids as children

MODE_LINE = "] mode "


def crashed(text):
    """A segfault as the log reports it (under ASan, its SEGV handler aborts;
    under TSan, its handler exits with code 66)."""
    return "killed by signal 11 (SIGSEGV)" in text or (SANITIZED and (
        "killed by signal 6 (SIGABRT)" in text or "exited with code 66" in text))


def mode_lines(srv):
    return [l for l in srv.stderr_text().splitlines() if MODE_LINE in l]


def who(srv, path="/"):
    return fetch(srv, path).json()


def spread(srv, n=6, s=0.3):
    """n concurrent slow requests, so that every worker takes some."""
    return in_threads(lambda: who(srv, "/sleep?s=%s" % s), [()] * n)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(") ")[1][0] != "Z"


# -- auto ---------------------------------------------------------------------

def test_auto_picks_interpreters_when_the_app_loads(server):
    srv = server("modes:app")
    [line] = mode_lines(srv)
    assert "mode interpreters" in line and "auto:" in line, line
    j = who(srv)
    assert j["mode"] == "interpreters" and j["interp"] != 0 and j["pid"] == srv.pid, j


def test_auto_falls_back_to_processes_naming_the_refusing_module(server):
    srv = server("refuses:app")
    [line] = mode_lines(srv)
    assert "[WARNING] mode processes" in line, line
    assert "module _testsinglephase refuses sub-interpreters" in line, line
    assert "ImportError: module _testsinglephase does not support loading in subinterpreters" in line, line
    j = who(srv)
    assert j["mode"] == "processes" and j["interp"] == 0, j
    assert j["ppid"] == srv.pid and j["pid"] != srv.pid, j


def test_auto_probe_that_hangs_falls_back_to_processes(server):
    t0 = time.monotonic()
    srv = server("probe_trouble:app", "--probe-timeout", "1", env={"GORGON_TEST_PROBE": "hang"})
    [line] = mode_lines(srv)
    assert "mode processes" in line and "longer than 1s" in line and "cannot tell" in line, line
    assert time.monotonic() - t0 < scaled(15)
    assert who(srv)["mode"] == "processes"


def test_auto_probe_that_crashes_falls_back_to_processes(server):
    srv = server("probe_trouble:app", env={"GORGON_TEST_PROBE": "crash"})
    [line] = mode_lines(srv)
    assert "mode processes" in line and crashed(line), line
    assert who(srv)["mode"] == "processes"
    assert srv.running()


# -- processes -----------------------------------------------------------------

@pytest.mark.tsan
def test_processes_mode(server):
    srv = server("modes:app", "--mode", "processes", "--workers", "2")
    assert "mode processes: 2 worker processes" in mode_lines(srv)[0]
    seen = []
    for _ in range(5):
        seen += spread(srv, 4)
        if len({j["pid"] for j in seen}) == 2:
            break
    pids = {j["pid"] for j in seen}
    assert len(pids) == 2 and srv.pid not in pids, seen
    assert pids == children(srv.pid), (pids, children(srv.pid))
    assert {j["mode"] for j in seen} == {"processes"} and {j["interp"] for j in seen} == {0}
    assert {j["worker_id"] for j in seen} == {0, 1} and {j["worker_count"] for j in seen} == {2}
    assert srv.stop() == 0
    assert not any(alive(p) for p in pids)


def test_processes_mode_with_reuse_port(server):
    """One SO_REUSEPORT socket per worker of every child: the kernel spreads
    new connections over all the children."""
    srv = server("modes:app", "--mode", "processes", "--workers", "3", "--reuse-port")
    pids = {who(srv)["pid"] for _ in range(60)}
    assert pids == children(srv.pid), pids


@pytest.mark.tsan
def test_processes_times_interpreters(server):
    srv = server("modes:app", "--processes", "2", "--workers", "2")
    assert "mode interpreters: 2 worker processes x 2 own-GIL" in mode_lines(srv)[0]
    assert sorted(srv.ready_workers()) == [0, 1, 2, 3]
    seen = []
    for _ in range(5):
        seen += spread(srv, 8)
        if len({j["pid"] for j in seen}) == 2:
            break
    assert len({j["pid"] for j in seen}) == 2 and all(j["interp"] != 0 for j in seen), seen
    assert {j["worker_count"] for j in seen} == {4}


def test_graceful_stop_finishes_in_flight_requests(server, tmp_path):
    srv = server("modes:app", "--mode", "processes", "--workers", "2")
    pids = children(srv.pid)
    result = {}
    started = tmp_path / "started"

    def slow():
        result["j"] = who(srv, "/sleep?s=1&started=%s" % started)

    import threading
    t = threading.Thread(target=slow)
    t.start()
    wait_for(started.exists, 30, what="the slow request to reach the application")
    assert srv.stop(signal.SIGTERM) == 0
    t.join(10)
    assert result.get("j", {}).get("mode") == "processes", result
    assert not any(alive(p) for p in pids)


@pytest.mark.tsan
@pytest.mark.parametrize("args", [("--mode", "processes"), ("--mode", "interpreters", "--processes", "2")],
                         ids=["processes", "processes-x-interpreters"])
def test_segfaulting_child_is_replaced(server, args):
    srv = server("modes:app", *args, "--workers", "2")
    before = children(srv.pid)
    assert len(before) == 2
    with pytest.raises((AssertionError, OSError)):
        fetch(srv, "/crash", timeout=5)
    wait_for(lambda: crashed(srv.stderr_text()), 10, what="the crash in the log")
    wait_for(lambda: len(children(srv.pid)) == 2 and children(srv.pid) != before, 10,
             what="a replacement child")
    wait_for(lambda: "serving again" in srv.stderr_text(), 10, what="the replacement ready")
    for _ in range(10):
        assert who(srv)["pid"] in children(srv.pid)
    assert srv.running()
    assert srv.stop() == 0


def test_sigkilled_child_is_replaced_and_unix_socket_survives(server, tmp_path):
    path = str(tmp_path / "g.sock")
    srv = server("modes:app", "--mode", "processes", "--workers", "1", "--bind", "unix:" + path)
    [child] = children(srv.pid)
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: "SIGKILL" in srv.stderr_text(), 10, what="the death in the log")
    wait_for(lambda: "serving again" in srv.stderr_text(), 10, what="a replacement")
    assert os.path.exists(path)
    assert who(srv)["pid"] != child
    assert srv.stop() == 0
    assert not os.path.exists(path)


def test_gives_up_after_repeated_import_failures(server, tmp_path):
    marker = tmp_path / "fail"
    srv = server("flaky_import:app", "--mode", "processes", "--workers", "1",
                 env={"GORGON_TEST_FAIL_MARKER": str(marker)})
    [child] = children(srv.pid)
    marker.write_text("x")
    t0 = time.monotonic()
    os.kill(child, signal.SIGKILL)
    rc = srv.wait_exit(30)
    elapsed = time.monotonic() - t0
    text = srv.stderr_text()
    assert rc == 1, (rc, text)
    assert "could not start 5 times in a row, giving up" in text, text
    assert "flaky_import told to fail" in text, text
    assert text.count("restarting it in") == 5, text  # the first death, then 4 failed starts
    # each failed start waits twice as long as the one before (backoff)
    delays = [float(d) for d in re.findall(r"restarting it in ([0-9.]+) s", text)]
    assert all(b == 2 * a for a, b in zip(delays[1:], delays[2:])) and delays[1] > 0, delays
    # and the restarts did wait (a lower bound: a loaded machine only adds to it)
    assert elapsed >= sum(delays), (elapsed, delays)


def test_children_follow_a_killed_supervisor(server):
    srv = server("modes:app", "--mode", "processes", "--workers", "2")
    pids = children(srv.pid)
    srv.proc.kill()
    srv.proc.wait()
    wait_for(lambda: not any(alive(p) for p in pids), 10, what="the children to leave")


def test_import_error_in_processes_mode_exits_1(server):
    srv = server("broken_import:app", "--mode", "processes", wait=None)
    rc = srv.wait_exit(20)
    text = srv.stderr_text()
    assert rc == 1 and "gorgon_test_missing_dependency" in text, (rc, text)
    assert rc not in CRASH_CODES and "Traceback" not in text


def test_processes_flag_with_processes_mode_is_a_usage_error(server):
    srv = server("modes:app", "--mode", "processes", "--processes", "2", wait=None)
    assert srv.wait_exit(20) == 2
    assert "--processes goes with" in srv.stderr_text()


# -- threads -------------------------------------------------------------------

@pytest.mark.tsan
def test_threads_mode(server):
    srv = server("modes:app", env={"GORGON_MODE": "threads"}, workers=3)
    text = srv.stderr_text()
    assert "mode threads: 3 threads in the main interpreter (--mode threads)" in text, text
    assert "has a GIL" in text or "free-threaded" in text
    seen = []
    for _ in range(5):
        seen += spread(srv, 6)
        if len({j["tid"] for j in seen}) == 3:
            break
    assert {j["pid"] for j in seen} == {srv.pid} and {j["interp"] for j in seen} == {0}, seen
    assert len({j["tid"] for j in seen}) == 3 and srv.pid not in {j["tid"] for j in seen}, seen
    assert {j["mode"] for j in seen} == {"threads"} and {j["worker_id"] for j in seen} == {None}
    assert srv.stop() == 0


def test_threads_mode_serves_an_app_that_refuses_sub_interpreters(server):
    srv = server("refuses:app", "--mode", "threads")
    assert who(srv)["mode"] == "threads"


def test_threads_times_processes(server):
    srv = server("modes:app", "--mode", "threads", "--processes", "2")
    assert sorted(srv.ready_workers()) == [0, 1, 2, 3]
    assert len(children(srv.pid)) == 2


# -- pure-Python fallback ---------------------------------------------------------

@pytest.fixture
def purepkg(tmp_path):
    """purepkg/_testsinglephase.<so> (refuses sub-interpreters) + its .py;
    purepkg/_zoneinfo.<so> (loads anywhere) + a .py that must not be taken."""
    import _zoneinfo  # a shared library in pyenv's builds and in Debian's (_bisect is built in there)
    import _testsinglephase
    pkg = tmp_path / "purepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod in (_testsinglephase, _zoneinfo):
        so = mod.__file__
        shutil.copy(so, pkg / os.path.basename(so))
        (pkg / (mod.__name__ + ".py")).write_text("FROM_SOURCE = True\n")
        assert os.path.basename(so).endswith(sysconfig.get_config_var("EXT_SUFFIX")), so
    return tmp_path


def test_pure_fallback_loads_the_source_in_sub_interpreters(server, purepkg):
    srv = server("purefallback_app:app", "--pythonpath", str(purepkg))
    text = srv.stderr_text()
    assert "mode interpreters" in mode_lines(srv)[0], text
    fallback = [l for l in text.splitlines() if "pure-Python fallback" in l]
    assert len(fallback) == 1 and "purepkg._testsinglephase" in fallback[0], text
    j = who(srv)
    assert j["source"] is True and j["file"].endswith("_testsinglephase.py") and j["interp"] != 0, j
    # A compiled module that loads in a sub-interpreter stays compiled.
    assert j["ok_source"] is False and j["ok_file"].endswith(".so"), j


def test_no_pure_fallback_means_processes(server, purepkg):
    srv = server("purefallback_app:app", "--pythonpath", str(purepkg), "--no-pure-fallback")
    assert "mode processes" in mode_lines(srv)[0]
    assert "pure-Python fallback" not in srv.stderr_text()
    j = who(srv)
    assert j["source"] is False and j["interp"] == 0, j
