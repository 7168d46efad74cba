"""Workers are OS threads, each owning its own sub-interpreter with its own GIL."""
import uuid

import pytest

from conftest import fetch, in_threads


@pytest.fixture
def two_workers(shared_server):
    return shared_server("router:app", "--workers", "2")


@pytest.mark.tsan
def test_requests_spread_over_distinct_interpreters(two_workers):
    seen = []
    for _ in range(20):  # pairs of concurrent requests: the busy worker cannot take both
        seen += in_threads(lambda: fetch(two_workers, "/cpu?ms=30").json(), [()] * 2)
    for _ in range(20):
        seen.append(fetch(two_workers, "/cpu?ms=1").json())
    interps = {j["interp"] for j in seen}
    assert 0 not in interps, "app ran in the main interpreter"
    assert len(interps) >= 2, "all requests ran in interpreter(s) %s" % interps
    # each interpreter lives on one OS thread, which is not the main thread
    by_interp = {}
    for j in seen:
        by_interp.setdefault(j["interp"], set()).add(j["tid"])
        assert j["tid"] != j["pid"], "app code ran on the process's main thread"
    assert all(len(t) == 1 for t in by_interp.values()), by_interp
    tids = [next(iter(t)) for t in by_interp.values()]
    assert len(set(tids)) == len(tids), by_interp


@pytest.mark.tsan
def test_cpu_bound_requests_run_in_parallel(two_workers):
    """Two requests run at the same time, on two threads of two interpreters
    that each have their own GIL: each waits, never letting go of its GIL, for
    the other to have started (tests/apps/_wsgicheck.py meet). With one GIL
    shared between the workers the first would hold it until its timeout and
    the second could not start meanwhile. No timing: the timeout only bounds
    how long a failure takes. How much faster parallel is belongs to the
    benchmark, not to a test."""
    key = "meet-%s" % uuid.uuid4().hex
    a, b = in_threads(lambda: fetch(two_workers, "/meet?key=%s&n=2&timeout=30" % key,
                                    timeout=60).json(), [()] * 2)
    assert a["interp"] != b["interp"] and a["tid"] != b["tid"], (a, b)
    assert a["met"] and b["met"], "the two requests never ran at the same time: %r %r" % (a, b)
    assert a["gil"] == b["gil"] == "own", (a, b)
    assert a["gil"] == b["gil"] == "own", (a["gil"], b["gil"])


def test_module_state_is_per_interpreter(two_workers):
    counts = {}
    for _ in range(6):
        # each pair meets (both requests running at once), so both workers serve
        key = "counter-%s" % uuid.uuid4().hex
        for j in in_threads(lambda: fetch(two_workers, "/counter?meet=%s" % key, timeout=60).json(),
                            [()] * 2):
            assert j["met"], j
            counts.setdefault(j["interp"], []).append(j["count"])
    # Each interpreter counts only the requests it served itself: consecutive
    # numbers per interpreter (a shared counter would leave gaps).
    for interp, seq in counts.items():
        seq = sorted(seq)
        assert seq == list(range(seq[0], seq[0] + len(seq))), (interp, seq)
    assert len(counts) >= 2, counts


@pytest.mark.tsan
def test_concurrent_mixed_load(two_workers):
    def client(k):
        out = []
        for i in range(5):
            out.append(fetch(two_workers, "/echo/%d" % k, "POST", body=b"%d" % i).json()["body"])
            out.append(fetch(two_workers, "/stream?n=2").body.decode())
        return out

    results = in_threads(client, [(k,) for k in range(16)])
    for out in results:
        assert out[0::2] == ["0", "1", "2", "3", "4"]
        assert set(out[1::2]) == {"chunk 0\nchunk 1\n"}
