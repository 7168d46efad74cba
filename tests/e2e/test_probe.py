"""--mode auto's probe (a throwaway child that imports the app in a
sub-interpreter) when the app misbehaves only there: an ordinary exception,
a probe that exits without answering, a stop signal while the probe runs."""
import os
import signal

from conftest import child_pids as children
from conftest import fetch, wait_for

MODE_LINE = "] mode "


def mode_lines(srv):
    return [l for l in srv.stderr_text().splitlines() if MODE_LINE in l]


def test_app_failing_only_in_a_sub_interpreter_runs_in_processes(server):
    srv = server("probe_trouble:app", "--workers", "1", env={"GORGON_TEST_PROBE": "raise"})
    [line] = mode_lines(srv)
    assert "[WARNING] mode processes" in line, line
    assert "fails to import in a sub-interpreter, not in a main one" in line, line
    assert "this app only fails in a sub-interpreter" in srv.stderr_text()
    j = fetch(srv, "/").json()
    assert j["mode"] == "processes" and j["pid"] != srv.pid, j
    assert srv.stop() == 0


def test_probe_that_exits_without_answering_falls_back_to_processes(server):
    srv = server("probe_trouble:app", "--workers", "1", env={"GORGON_TEST_PROBE": "exit"})
    [line] = mode_lines(srv)
    assert "[WARNING] mode processes" in line and "cannot tell" in line, line
    assert "exited (status 3)" in line, line
    assert fetch(srv, "/").json()["mode"] == "processes"
    assert srv.stop() == 0


def test_stop_signal_during_the_probe(server):
    """SIGTERM while the probe hangs: the server ends the probe and leaves
    with 0, serving nothing, without waiting for --probe-timeout."""
    srv = server("probe_trouble:app", "--workers", "1", "--probe-timeout", "600",
                 env={"GORGON_TEST_PROBE": "hang"}, wait=None)
    wait_for(lambda: srv.running() and children(srv.pid), 30, what="the probe child to start")
    probes = children(srv.pid)
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(30)
    assert rc == 0, (rc, srv.stderr_text())
    for pid in probes:
        wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                 open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z", 10,
                 what="the probe child to end")
    assert mode_lines(srv) == [], srv.stderr_text()
