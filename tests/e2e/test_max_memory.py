"""--max-worker-memory: a worker that grows past the bound is replaced as
--max-requests replaces one (a new worker serves first, the old one finishes
its requests), with no failed request under a bounded load. In one process
the interpreter's own heap is measured; with worker processes, the
process's resident memory."""
import re
import time

import pytest

from conftest import SANITIZED, fetch, wait_for

from stopload import run_load_around

# A sanitizer build counting coverage starts a process at about 73 MiB
# resident (a plain one at about 15): the bounds sit above each build's start.
RSS = 2.5 if SANITIZED else 1
INTERPRETERS = pytest.param(("--mode", "interpreters", "--max-worker-memory", "24"), id="interpreters")
PROCESSES = pytest.param(("--mode", "processes", "--max-worker-memory", "%d" % (64 * RSS)), id="processes")
PROCS_X_INTERPS = pytest.param(("--mode", "interpreters", "--processes", "2", "--max-worker-memory",
                                "%d" % (96 * RSS)), id="processes-x-interpreters")
NOT_WATCHED = r"worker \d+ starts at [\d.]+ MiB of (heap|resident memory), above --max-worker-memory"


@pytest.mark.parametrize("args", [INTERPRETERS, PROCESSES, PROCS_X_INTERPS])
def test_growing_workers_are_replaced_without_a_failed_request(server, args):
    srv = server("grows:app", "--workers", "2", *args, workers=2)
    # ~120 KB kept per request: each worker crosses its bound within a few
    # hundred of its requests. A worker looks at its memory about once a
    # second: the load goes on until a replacement was logged and serves.
    pattern = r"worker \d+ uses [\d.]+ MiB of (heap|resident memory), above --max-worker-memory"

    processes = "processes" in args or "--processes" in args

    def replaced_and_serving():
        wait_for(lambda: re.search(pattern, srv.stderr_text()) or not srv.running(), timeout=30,
                 what="a replacement for memory")
        assert srv.running(), srv.describe()
        if processes:
            # The load that follows is short: on a busy machine the surviving
            # process could answer all of it before the new one has started.
            # So wait until the new process has answered a request.
            # Any replacement will do: under this load the first may itself
            # have been replaced by now.
            def new_pids():
                return set(re.findall(r"worker process \d+: pid (\d+) serves", srv.stderr_text()))

            wait_for(new_pids, timeout=60, what="the replacement process")
            wait_for(lambda: fetch(srv.addr, "/").body.split()[1].decode() in new_pids(), timeout=60,
                     what="a request answered by a replacement process")
        time.sleep(0.5)

    tally = run_load_around(srv, replaced_and_serving, path=b"/", total=2000)
    c = tally.counts
    assert c["ok"] >= 1000, "the load did not run: %r\n%s" % (c, srv.describe())
    assert tally.failures() == 0, "%r\n%s\n%s" % (c, "\n".join(tally.notes), srv.describe())
    text = srv.stderr_text()
    assert not re.search(NOT_WATCHED, text), srv.describe()
    replaced = re.findall(pattern, text)
    assert replaced, srv.describe()
    if processes:
        assert set(replaced) == {"resident memory"}
        served_by = {b.split()[1] for b in tally.bodies}  # pids
    else:
        assert set(replaced) == {"heap"}
        served_by = {b.split()[2] for b in tally.bodies}  # interpreters
    # Two workers to begin with, and at least one replacement.
    assert len(served_by) >= 3, (served_by, srv.describe())
    assert srv.stop() == 0, srv.describe()


def test_threads_mode_in_one_process_says_it_does_not_watch(server):
    srv = server("grows:app", "--workers", "2", "--mode", "threads", "--max-worker-memory", "24", workers=2)
    assert "--max-worker-memory is not watched in --mode threads in one process" in srv.stderr_text()
    assert srv.stop() == 0, srv.describe()


@pytest.mark.parametrize("args", [("--mode", "interpreters"), ("--mode", "processes")],
                         ids=["interpreters", "processes"])
def test_workers_that_start_above_the_bound_are_not_replaced_again_and_again(server, args):
    """A bound below what a fresh worker already holds would replace each
    worker with one just as large, forever: each worker says so once and
    serves on, unwatched."""
    srv = server("grows:app", "--workers", "2", *args, "--max-worker-memory", "1", workers=2)
    wait_for(lambda: len(re.findall(NOT_WATCHED, srv.stderr_text())) >= 2, timeout=10,
             what="both workers' warnings")
    pids = {fetch(srv.addr, "/").body.split()[1] for _ in range(200)}
    time.sleep(1.5)  # a watched worker would measure itself within a second
    assert {fetch(srv.addr, "/").body.split()[1] for _ in range(50)} <= pids
    text = srv.stderr_text()
    assert len(re.findall(NOT_WATCHED, text)) == 2, srv.describe()
    assert "replacing" not in text, srv.describe()
    assert srv.stop() == 0, srv.describe()
