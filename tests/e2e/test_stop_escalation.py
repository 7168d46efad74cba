"""A stop that cannot wait for ever: a request that outlives --graceful-timeout
has its connection closed cleanly (no response, no reset) and the server exits
0; a worker process that does not leave in time is killed by the supervisor."""
import os
import signal
import time

import pytest

from conftest import Conn, build_request, read_lines, scaled, wait_for

MODES = [pytest.param(("--mode", "interpreters"), id="interpreters"),
         pytest.param(("--mode", "processes"), id="processes")]


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.parametrize("mode", MODES)
def test_request_past_the_graceful_timeout_is_closed_cleanly(server, tmp_path, mode):
    srv = server("router:app", "--workers", "1", "--graceful-timeout", "1", *mode)
    marker = tmp_path / "started"
    idle = Conn(srv)
    assert idle.request("GET", "/hello").status == 200
    busy = Conn(srv, timeout=30)
    busy.send(build_request("GET", "/slow?s=30&marker=%s" % marker))
    wait_for(lambda: read_lines(marker), 10, what="the slow request to start")
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    assert idle.wait_closed(5) == b"", "an idle keep-alive connection got bytes at the stop"
    assert busy.wait_closed(10) == b"", "the request past the graceful timeout got a partial answer"
    assert not busy.reset, "the request past the graceful timeout was reset, not closed"
    rc = srv.wait_exit(15)
    assert rc == 0, "exit code %s\n%s" % (rc, srv.describe())
    took = time.monotonic() - t0
    assert 0.9 < took < scaled(8), "stopped %.1fs after SIGTERM with --graceful-timeout 1" % took
    assert "graceful timeout (1s) expired with 1 worker(s) still in a request: exiting" in srv.stderr_text()


def test_worker_process_that_does_not_leave_is_killed(server):
    """A stopped (SIGSTOP) worker process cannot take the SIGTERM: past the
    graceful timeout and the supervisor's margin it is SIGKILLed, and the
    server ends."""
    srv = server("hello:app", "--mode", "processes", "--workers", "2", "--graceful-timeout", "1")
    kids = children(srv.pid)
    assert len(kids) == 2, kids
    os.kill(kids[0], signal.SIGSTOP)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(scaled(20))
    took = time.monotonic() - t0
    assert rc == 0, "exit code %s\n%s" % (rc, srv.describe())
    assert 5 < took < scaled(15), "ended %.1fs after SIGTERM (graceful timeout 1 s + 5 s margin)" % took
    assert not os.path.exists("/proc/%d" % kids[0]), "the stopped worker process outlived the server"
