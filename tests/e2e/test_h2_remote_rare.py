"""HTTP/2 streams answered by a sibling worker (src/http/h2_remote.c) in
their rare endings. Every stream gets either its whole response or a reset
with a defined code, never nothing; the connection serves on (while its
worker does); nothing is logged as a crash.

- The sibling goes away (SIGTTOU: the newest worker finishes its requests
  and ends) while it runs a stream of a connection another worker owns:
  past --graceful-timeout it ends that run, the owner resets the stream
  (RST_STREAM INTERNAL_ERROR, no response begun), and the connection's
  other streams, old and new, are answered whole.
- A reload (SIGHUP) while streams run on both workers: GOAWAY, both whole.
- RST_STREAM of a stream queued on a sibling busy with another: never
  started there.
- The sibling has no memory to take a stream up (fault injection, in the
  builds with it): that stream is reset (INTERNAL_ERROR), the other whole.
"""
import re
import signal
import uuid
from pathlib import Path

import pytest
from conftest import fetch, log_since, scaled, wait_for

h2 = pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
from test_http2 import CANCEL, INTERNAL_ERROR, NO_ERROR, at_once, ready_client, wait_log, wait_stdout  # noqa: E402
from test_http_faults import LOG_MARKERS  # noqa: E402

CRASH = LOG_MARKERS + ("Traceback", "Exception in ASGI application", "[CRITICAL]")


def assert_no_crash(srv):
    """Nothing in the server's output reads as a crash or an error of its own."""
    log = srv.stderr_text() + srv.stdout_text()
    assert not any(m in log for m in CRASH), srv.describe()


def worker_ids(srv):
    """The two workers' ids, oldest first."""
    ids = wait_for(lambda: len(re.findall(r"worker \d+ ready", srv.stderr_text())) == 2 and
                   sorted(int(i) for i in re.findall(r"worker (\d+) ready", srv.stderr_text())),
                   timeout=20, what="two workers ready")
    return ids


def who(c):
    return int(bytes(c.get("/who")["data"]))


def client_owned_by(srv, worker, other):
    """A connection whose loop is that worker's (its first stream runs
    there: nothing else runs on it). The workers share one listening
    socket: when the other one accepted it, the next connection goes to
    this one while the other's loop is held in a call."""
    c = ready_client(srv)
    if who(c) == worker:
        return c
    busy = c
    sid = busy.request("/block?s=%g" % scaled(3))
    wait_stdout(srv, "block in worker %d" % other)
    c = ready_client(srv)
    assert who(c) == worker, srv.describe()
    busy.wait(lambda: ended(busy, sid), timeout=30)
    busy.close()
    return c


def ended(c, sid):
    return c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None


def test_a_sibling_that_goes_away_resets_the_stream_it_runs(server):
    """A stream on the connection's own worker and one on the sibling that
    SIGTTOU retires: that one is reset once the sibling's graceful time is
    over; the other, and a new one, are answered whole."""
    srv = server("h2rare:asgi", "--mode", "interpreters", "--graceful-timeout", "1", workers=2)
    stays, leaves = worker_ids(srv)  # SIGTTOU retires the newest
    c = client_owned_by(srv, stays, leaves)
    key = uuid.uuid4().hex
    # The first runs on the connection's loop, which is then busy: the
    # second goes to the sibling, the one SIGTTOU retires.
    local = c.request("/park?key=%s-local" % key)
    wait_stdout(srv, "park %s-local in worker %d" % (key, stays))
    remote = c.request("/park?key=%s-remote" % key)
    wait_stdout(srv, "park %s-remote in worker %d" % (key, leaves))
    srv.send_signal(signal.SIGTTOU)
    wait_log(srv, "SIGTTOU received: worker %d finishes its requests and ends" % leaves)
    c.wait(lambda: ended(c, remote), timeout=30)
    r = c.responses[remote]
    assert r["reset"] == INTERNAL_ERROR and r["headers"] is None and not r["data"], r
    assert not ended(c, local) and c.goaway is None
    # The connection goes on: a new stream (its loop is the only one left),
    # then the first one's whole response.
    assert who(c) == stays
    assert c.get("/release?key=%s-local" % key)["headers"][":status"] == "200"
    c.wait(lambda: ended(c, local), timeout=30)
    r = c.responses[local]
    assert r["reset"] is None and r["headers"][":status"] == "200", r
    assert bytes(r["data"]) == b"released %s-local in worker %d" % (key.encode(), stays)
    assert c.goaway is None
    c.close()
    assert fetch(srv.addr, "/who").body == str(stays).encode()
    assert srv.running()
    assert_no_crash(srv)
    assert srv.stop() == 0, srv.describe()


def test_reload_finishes_the_streams_a_sibling_runs(server):
    """SIGHUP while a connection has a stream running on its own worker and
    one on the sibling: both old workers finish their requests; the
    connection hears GOAWAY (NO_ERROR) naming both streams, both get their
    whole responses (released through the new workers), then it ends; the
    new workers serve."""
    srv = server("h2rare:asgi", "--mode", "interpreters", workers=2)
    old = worker_ids(srv)
    c = ready_client(srv)
    owner = who(c)
    key = uuid.uuid4().hex
    local = c.request("/park?key=%s-local" % key)
    wait_stdout(srv, "park %s-local in worker %d" % (key, owner))
    remote = c.request("/park?key=%s-remote" % key)
    sibling = [w for w in old if w != owner][0]
    wait_stdout(srv, "park %s-remote in worker %d" % (key, sibling))
    srv.send_signal(signal.SIGHUP)
    wait_log(srv, "reloaded in ")
    c.wait(lambda: c.goaway is not None, timeout=30)
    assert c.goaway[0] == NO_ERROR and c.goaway[1] >= max(local, remote), c.goaway
    assert not ended(c, local) and not ended(c, remote)
    for name in ("local", "remote"):
        assert fetch(srv.addr, "/release?key=%s-%s" % (key, name)).body == b"released"
    c.wait(lambda: ended(c, local) and ended(c, remote), timeout=30)
    for sid, name, worker in ((local, "local", owner), (remote, "remote", sibling)):
        r = c.responses[sid]
        assert r["reset"] is None and r["headers"][":status"] == "200", r
        assert bytes(r["data"]) == b"released %s-%s in worker %d" % (key.encode(), name.encode(), worker)
    assert c.wait(lambda: False, timeout=30, closed_ok=True) is False  # then the connection ends
    c.close()
    assert len(re.findall(r"worker \d+ ready", srv.stderr_text())) == 4  # the new ones (same ids)
    assert fetch(srv.addr, "/who").status == 200
    assert_no_crash(srv)
    assert srv.stop() == 0, srv.describe()


def test_rst_stream_of_a_stream_queued_on_a_busy_sibling(server):
    """Four streams at once on a WSGI connection: the two /who run on its
    loop, the two /hold go to the sibling, which runs one (seconds long)
    while the other waits behind it. The client resets the waiting one:
    the sibling never starts it (its application never sees the request),
    the other /hold gets its whole response, and the connection serves
    on."""
    srv = server("h2rare:app", "--mode", "interpreters", workers=2)
    c = ready_client(srv)
    key = uuid.uuid4().hex
    hold = scaled(4)
    # Started newest first (http/h2.c spread): the newest /who here, the
    # /hold after it to the idle sibling, the older /who here, the oldest
    # /hold to the sibling again (this loop would run two, the sibling one).
    queued, who1, first, who2 = at_once(c, ["/hold?key=%s-queued&s=%g" % (key, hold), "/who",
                                            "/hold?key=%s-first&s=%g" % (key, hold), "/who"])
    c.wait(lambda: ended(c, who1) and ended(c, who2), timeout=30)
    owner = bytes(c.responses[who1]["data"]).decode()
    assert bytes(c.responses[who2]["data"]).decode() == owner
    wait_stdout(srv, "hold %s-first in worker" % key)
    sibling = re.search(r"hold %s-first in worker (\d+)" % key, srv.stdout_text()).group(1)
    assert sibling != owner and not ended(c, first) and not ended(c, queued)
    c.conn.reset_stream(queued, error_code=CANCEL)
    c.flush()
    c.wait(lambda: ended(c, first), timeout=30)
    r = c.responses[first]
    assert r["reset"] is None and bytes(r["data"]) == b"held %s-first in worker %s" % (key.encode(), sibling.encode())
    assert c.responses[queued]["headers"] is None and not c.responses[queued]["data"]
    assert c.get("/who")["headers"][":status"] == "200" and c.goaway is None
    c.close()
    assert srv.stop() == 0, srv.describe()
    # Not started, not even once the sibling was free again and the server
    # finished what it had (a graceful stop).
    assert "hold %s-queued" % key not in srv.stdout_text(), srv.describe()
    assert_no_crash(srv)


# ---- the sibling cannot take the stream up (fault injection) -------------

BIG_HEAD = [("x-big-%d" % i, "v" * 1000) for i in range(20)]


def site(text):
    """The fault site of src/http/h2_remote.c on the line with that text."""
    src = Path(__file__).resolve().parents[2] / "src" / "http" / "h2_remote.c"
    lines = [i for i, line in enumerate(src.read_text().splitlines(), 1) if text in line]
    assert len(lines) == 1, (text, lines)
    return "src/http/h2_remote.c:%d" % lines[0]


# Where the sibling takes the stream up (start): its connection for it, and
# the copy of a head larger than a request buffer.
RUNNER_SITES = {site("runner_t *r = GN_FAIL(NULL, calloc"), site("char *p = GN_FAIL(NULL, malloc(j->head_len))")}


def two_streams_at_once(srv):
    """On a fresh connection of a two-worker server, two /slow-echo streams
    (the WSGI application holds its loop 20 ms, so that its loop's streams
    are worth handing over) with heads larger than a request buffer (16
    KiB), ready together (the heads take more than one of the server's
    reads): one runs on the connection's loop, the other on the sibling
    (test_http_faults.h2_together)."""
    from test_http_faults import h2_together
    return h2_together(srv, [("/slow-echo", "GET", BIG_HEAD, None, b"echo:", None)] * 2)


def test_a_sibling_without_memory_for_a_stream_resets_it(server):
    """Every failing site of that exchange in turn (test_http_faults.py's
    sweep): whichever fails, both streams get a defined answer. Where the
    sibling has no memory to take the stream up (its connection, the copy
    of the request head), the owner resets that stream (RST_STREAM
    INTERNAL_ERROR) after one line in the log, and the other stream's
    response is whole. The two threads pass their sites in an order that
    may vary: up to three sweeps, until both sites have failed."""
    from test_http_faults import H2_OUTCOMES, sweep
    srv = server("http_faults:app", "--mode", "interpreters", workers=2)
    at, fired_all = {}, []
    for _ in range(3):
        offset = len(srv.stderr_bytes())
        seen = []

        def exchange(s):
            seen.append(two_streams_at_once(s))
            return seen[-1]
        outcomes = sweep(srv, exchange)
        assert all(set(o.split("+")) <= H2_OUTCOMES for o in outcomes), outcomes
        fired = re.findall(r"fault injected: (\S+)", log_since(srv, offset))
        assert len(fired) == len(seen) - 1, (fired, seen)
        fired_all += fired
        for i, where in enumerate(fired):
            if where in RUNNER_SITES:
                at.setdefault(where, set()).add(seen[i])
        if set(at) == set(RUNNER_SITES):
            break
    assert set(at) == set(RUNNER_SITES), (fired_all, at)
    assert all(o == {"reset %d+whole" % INTERNAL_ERROR} for o in at.values()), at
    # One line each (the sweep checks one per fault); the sibling's request
    # buffer, when it has no spare one, fails with the same line.
    runner_faults = sum(where in RUNNER_SITES for where in fired_all)
    assert srv.stderr_text().count(": out of memory for an HTTP/2 stream\n") >= runner_faults, srv.describe()
    assert two_streams_at_once(srv) == "whole+whole"
    assert_no_crash(srv)
