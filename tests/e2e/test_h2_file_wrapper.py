"""wsgi.file_wrapper over a regular file on an HTTP/2 stream: the stream
reads the file for its DATA frames (no sendfile), so the file must stay open
until the last byte is read. Over a stream run by the connection's own
worker and over one run by another worker, small (one frame) and past the
64 KiB window; the body arrives whole and the file is closed once."""
import pytest
from conftest import fetch, scaled, wait_for

pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
from test_http2 import H2, ready_client  # noqa: E402

BLOCK = bytes(range(256))


def closed(srv):
    return int(fetch(srv, "/closed").body)


@pytest.mark.parametrize("n", [5000, 1 << 20])
def test_file_wrapper_on_the_connections_own_worker(server, n):
    srv = server("h2files:app", workers=1)
    c = H2(srv.addr)
    r = c.get("/file?n=%d" % n)
    c.close()
    assert r["reset"] is None and r["headers"][":status"] == "200", r["headers"]
    assert bytes(r["data"]) == (BLOCK * (n // 256 + 1))[:n]
    wait_for(lambda: closed(srv) == 1, scaled(10), what="the file closed once")


def test_file_wrapper_on_a_stream_another_worker_runs(server):
    """The first stream holds the connection's worker: the second runs on
    the other one, whose response goes through the connection's owner."""
    srv = server("h2files:app", "--mode", "interpreters", workers=2)
    c = ready_client(srv)
    hold = c.request("/hold?s=%g" % scaled(3))
    n = 1 << 20
    r = c.get("/file?n=%d" % n)
    c.wait(lambda: c.responses[hold]["ended"], timeout=30)
    c.close()
    assert r["reset"] is None and r["headers"][":status"] == "200", r["headers"]
    assert r["headers"]["x-who"] != bytes(c.responses[hold]["data"]).decode()  # another worker's
    assert bytes(r["data"]) == (BLOCK * (n // 256 + 1))[:n]
    wait_for(lambda: closed(srv) == 1, scaled(10), what="the file closed once")
