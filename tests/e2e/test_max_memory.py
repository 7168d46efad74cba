"""--max-worker-memory: a worker that grows past the bound is replaced as
--max-requests replaces one (a new worker serves first, the old one finishes
its requests), with no failed request under a bounded load. In one process
the interpreter's own heap is measured; with worker processes, the
process's resident memory."""
import re
import time

import pytest

from conftest import fetch, wait_for

from stopload import run_load_around

INTERPRETERS = pytest.param(("--mode", "interpreters", "--max-worker-memory", "24"), id="interpreters")
PROCESSES = pytest.param(("--mode", "processes", "--max-worker-memory", "64"), id="processes")
PROCS_X_INTERPS = pytest.param(("--mode", "interpreters", "--processes", "2", "--max-worker-memory", "96"),
                               id="processes-x-interpreters")


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
            m = wait_for(lambda: re.search(r"worker process \d+: pid (\d+) serves", srv.stderr_text()),
                         timeout=60, what="the replacement process")
            wait_for(lambda: fetch(srv.addr, "/").body.split()[1].decode() == m.group(1), timeout=60,
                     what="a request answered by the replacement process")
        time.sleep(0.5)

    tally = run_load_around(srv, replaced_and_serving, path=b"/", total=2000)
    c = tally.counts
    assert c["ok"] >= 1000, "the load did not run: %r\n%s" % (c, srv.describe())
    assert tally.failures() == 0, "%r\n%s\n%s" % (c, "\n".join(tally.notes), srv.describe())
    text = srv.stderr_text()
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
