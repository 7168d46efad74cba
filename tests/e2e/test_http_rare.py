"""Rare paths of the HTTP layer that real input reaches (what only a failing
allocation or library call reaches is test_http_faults.py's): HTTP/2 streams
still running, here and on a sibling worker, when the graceful stop's
deadline passes; each request method counted under its own name; percent
escapes that are not escapes left as they are in PATH_INFO; a file sent
by the kernel over HTTP/1.1 read into DATA frames over HTTP/2."""
import signal
import time

import pytest

from conftest import Conn, fetch, scaled, wait_for

pytest.importorskip("h2", reason="needs python-hyper h2 (requirements-dev.txt)")
from test_http2 import H2, NO_ERROR, at_once, pattern, ready_client  # noqa: E402


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


def test_each_method_is_counted_under_its_name(server):
    """The metrics' method label: the standard methods by name, any other
    (one as long as a standard one included) as "other"."""
    pytest.importorskip("prometheus_client", reason="needs prometheus_client (requirements-dev.txt)")
    from test_metrics import scrape, start
    srv = start(server, app="http_faults:app", workers=1)
    named = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]
    other = ["GEX", "PUX", "POSX", "HEAX", "PATCX", "TRACX", "DELETX", "OPTIONX", "CONNECX", "PROPFIND"]
    for method in named + other:
        with Conn(srv) as c:
            r = c.request(method, "/", body=b"x" if method in ("POST", "PUT", "PATCH") else b"")
            assert 200 <= r.status < 500, (method, r)
    m = scrape(srv.maddr)

    def counted(method):
        return sum(v for (name, labels), v in m.items()
                   if name == "gorgon_requests_total" and dict(labels)["method"] == method)
    assert {x: counted(x) for x in named} == {x: 1 for x in named}, m
    assert counted("other") == len(other), m


@pytest.mark.parametrize("target,path", [
    ("/echo/%41%4a%4A%2f", "/echo/AJJ/"),        # both cases of hex digits
    ("/echo/a%zz%g1%1g", "/echo/a%zz%g1%1g"),    # not hex digits: as they came
    ("/echo/%/x%%41", "/echo/%/x%A"),            # a percent before a non-digit
    ("/echo/end%4", "/echo/end%4"),              # cut short by the end
    ("/echo/end%", "/echo/end%"),
])
def test_percent_escapes_that_are_not_escapes_stay(router, target, path):
    r = fetch(router, target)
    assert r.status == 200 and r.json()["environ"]["PATH_INFO"] == path, (r, r.body[:300])


@pytest.mark.parametrize("size", [100, 300_000])
def test_wsgi_file_wrapper_over_http2_is_read_into_data_frames(router, tmp_path, size):
    """A regular file through wsgi.file_wrapper: over HTTP/1.1 sendfile sends
    it; an HTTP/2 stream reads it into DATA frames (several reads for 300
    KB), and the file is closed (PEP 3333's close()) only once it is sent.
    (It was closed as soon as the stream's queue had room, before any of it
    was read: every such stream was reset.)"""
    f, log = tmp_path / "data.bin", tmp_path / "log"
    f.write_bytes(pattern(size))
    c = H2(router.addr)
    r = c.get("/file-sendfile?path=%s&log=%s" % (f, log))
    c.close()
    assert r["headers"] and r["headers"][":status"] == "200", ({k: v for k, v in r.items() if k != "data"}, c.goaway)
    assert r["headers"]["content-length"] == str(size), r["headers"]
    assert bytes(r["data"]) == pattern(size)
    wait_for(lambda: log.exists() and log.read_text().split() == ["closed"], 5, what="the file's close()")


def test_wsgi_file_wrappers_of_streams_spread_over_workers(server, tmp_path):
    """Six such files on one connection at once, two workers: each stream,
    answered here or by the sibling, gets its whole file."""
    f = tmp_path / "data.bin"
    f.write_bytes(pattern(400_000))
    srv = server("router:app", "--mode", "interpreters", workers=2)
    c = ready_client(srv)
    sids = at_once(c, ["/file-sendfile?path=%s" % f] * 6)
    c.wait(lambda: all(c.responses[s]["ended"] or c.responses[s]["reset"] is not None for s in sids), timeout=30)
    c.close()
    assert all(c.responses[s]["ended"] and bytes(c.responses[s]["data"]) == pattern(400_000) for s in sids), \
        [(c.responses[s]["reset"], len(c.responses[s]["data"])) for s in sids]
