"""HTTP/2 streams answered by a sibling worker (src/http/h2_remote.c) in
its rare endings: the sibling goes away (SIGTTOU: the newest worker
finishes its requests and ends) while it still runs a stream of a
connection another worker owns. Past --graceful-timeout the sibling ends
that stream's run; the owner resets the stream (RST_STREAM INTERNAL_ERROR,
no response begun), and the connection serves its other streams, old and
new, as before. Nothing is lost silently: every stream gets either its
whole response or that reset."""
import re
import signal
import uuid

import pytest
from conftest import fetch, scaled

h2 = pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
from test_http2 import INTERNAL_ERROR, ready_client, wait_log, wait_stdout  # noqa: E402

CRASH = ("Traceback", "Exception in ASGI application", "Fatal", "Segmentation", "AddressSanitizer",
         "runtime error", "[CRITICAL]")


def worker_ids(srv):
    wait_log(srv, "ready")
    ids = sorted(int(i) for i in re.findall(r"worker (\d+) ready", srv.stderr_text()))
    assert len(ids) == 2, srv.describe()
    return ids


def client_owned_by(srv, worker):
    """A connection whose loop is that worker's (its first stream is run
    there: nothing else runs on it)."""
    for _ in range(40):
        c = ready_client(srv)
        if bytes(c.get("/who")["data"]).decode() == str(worker):
            return c
        c.close()
    raise AssertionError("no connection reached worker %d\n%s" % (worker, srv.describe()))


def ended(c, sid):
    return c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None


def test_a_sibling_that_goes_away_resets_the_stream_it_runs(server):
    srv = server("h2rare:asgi", "--mode", "interpreters", "--graceful-timeout", "1", workers=2)
    stays, leaves = worker_ids(srv)  # SIGTTOU retires the newest
    c = client_owned_by(srv, stays)
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
    assert bytes(c.get("/who")["data"]).decode() == str(stays)
    assert c.get("/release?key=%s-local" % key)["headers"][":status"] == "200"
    c.wait(lambda: ended(c, local), timeout=30)
    r = c.responses[local]
    assert r["reset"] is None and r["headers"][":status"] == "200", r
    assert bytes(r["data"]) == b"released %s-local in worker %d" % (key.encode(), stays)
    assert c.goaway is None
    c.close()
    assert fetch(srv.addr, "/who").body == str(stays).encode()
    assert srv.running()
    log = srv.stderr_text() + srv.stdout_text()
    assert not any(m in log for m in CRASH), srv.describe()
    assert srv.stop() == 0, srv.describe()
