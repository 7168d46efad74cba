"""Rare paths of the HTTP layer that real input reaches (what only a failing
allocation or library call reaches is test_http_faults.py's): HTTP/2 streams
still running, here and on a sibling worker, when the graceful stop's
deadline passes."""
import signal
import time

import pytest

from conftest import scaled

pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
from test_http2 import NO_ERROR, at_once, ready_client  # noqa: E402


def test_graceful_deadline_ends_streams_running_here_and_on_a_sibling(server):
    """ASGI streams of one connection, spread over both workers, that
    outlive --graceful-timeout: the client has GOAWAY (NO_ERROR) at the
    stop, and at the deadline the connection ends with no stream answered
    as if it were whole; the server exits 0 and nothing crashes."""
    srv = server("h2app:asgi", "--mode", "interpreters", "--graceful-timeout", "1")
    c = ready_client(srv)
    sids = at_once(c, ["/hold?s=60"] * 6)
    time.sleep(scaled(0.5))  # the streams start, some on the other worker
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    assert srv.wait_exit(scaled(20)) == 0, srv.describe()
    assert time.monotonic() - t0 < scaled(10), "the graceful deadline of 1s was not kept"
    c.wait(lambda: c.closed, timeout=10)
    assert c.goaway is not None and c.goaway[0] == NO_ERROR, c.goaway
    assert not any(c.responses[s]["ended"] for s in sids), c.responses
    log = srv.stderr_text()
    assert "Segmentation" not in log and "Fatal" not in log and "AddressSanitizer" not in log, log
