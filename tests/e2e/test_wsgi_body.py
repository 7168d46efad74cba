"""WSGI request and response bodies: wsgi.input, write(), close(),
wsgi.file_wrapper, streaming, exc_info, app errors."""
import os
import time

import pytest

from conftest import (Conn, build_request, chunked, fetch, proc_io, read_lines, scaled,
                      wait_for)

LINES = b"first line\nsecond\n\nfourth line is longer\nno newline at end"


def send_body(router, target, body, framing):
    if framing == "chunked":
        r = fetch(router, target, "POST", [("Transfer-Encoding", "chunked")], chunked(body, 5))
    else:
        r = fetch(router, target, "POST", [("Content-Length", str(len(body)))], body)
    assert r.status == 200, r
    return [p.encode("latin-1") for p in r.json()["pieces"]]


FRAMINGS = ["content-length", "chunked"]


# -- wsgi.input ------------------------------------------------------------

@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_read_all(router, framing):
    assert send_body(router, "/inputs?mode=read_all", LINES, framing) == [LINES, b""]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_read_n(router, framing):
    pieces = send_body(router, "/inputs?mode=read_n&n=7", LINES, framing)
    assert pieces[-2:] == [b"", b""], pieces
    assert b"".join(pieces) == LINES
    assert all(len(p) == 7 for p in pieces[:-3]) and 0 < len(pieces[-3]) <= 7, pieces


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_readline(router, framing):
    assert send_body(router, "/inputs?mode=readline", LINES, framing) == \
        LINES.splitlines(keepends=True) + [b""]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_readline_n(router, framing):
    pieces = send_body(router, "/inputs?mode=readline_n&n=4", b"abcdefghij\nxy\n", framing)
    assert pieces == [b"abcd", b"efgh", b"ij\n", b"xy\n", b""]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_readlines(router, framing):
    assert send_body(router, "/inputs?mode=readlines", LINES, framing) == \
        LINES.splitlines(keepends=True)


def test_input_readlines_hint(router):
    # readlines(hint) stops once the lines read so far total >= hint
    pieces = send_body(router, "/inputs?mode=readlines_hint&n=12", LINES, "content-length")
    assert pieces and b"".join(pieces) == LINES[:len(b"".join(pieces))]
    assert pieces[0] == b"first line\n"
    assert len(pieces) < len(LINES.splitlines())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_iteration(router, framing):
    assert send_body(router, "/inputs?mode=iter", LINES, framing) == \
        LINES.splitlines(keepends=True)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_mixed_calls(router, framing):
    assert send_body(router, "/inputs?mode=mixed&n=4", LINES, framing) == \
        [b"first line\n", b"seco", b"nd\n\nfourth line is longer\nno newline at end"]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_empty_body(router, framing):
    assert send_body(router, "/inputs?mode=read_n&n=5", b"", framing) == [b"", b""]


def test_input_no_body_get(router):
    r = fetch(router, "/inputs?mode=readline")
    assert r.json()["pieces"] == [""]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_large_lines(router, framing):
    body = b"".join(b"%06d:" % i + b"x" * (i % 700) + b"\n" for i in range(3000))
    pieces = send_body(router, "/inputs?mode=readline", body, framing)
    assert pieces == body.splitlines(keepends=True) + [b""]


# -- write() -------------------------------------------------------------

def test_write_callable_only(router):
    r = fetch(router, "/writer?mode=write_only")
    assert r.status == 200 and r.body == b"one,two,"


def test_write_then_iterable(router):
    assert fetch(router, "/writer?mode=mixed").body == b"one,two,three"


def test_write_with_content_length(router):
    r = fetch(router, "/writer?mode=cl")
    assert r.body == b"abcdefgh" and r.header("Content-Length") == "8" and not r.chunked


def test_write_keep_alive(router):
    with Conn(router) as c:
        for mode in ("write_only", "mixed", "cl", "write_only"):
            assert c.request("GET", "/writer?mode=" + mode).status == 200


# -- close() -------------------------------------------------------------

def closed_count(path, settle=0.3):
    wait_for(lambda: read_lines(path), 5, what="close() to be called")
    time.sleep(settle)
    return read_lines(path).count("closed")


def test_close_called_after_normal_response(router, tmp_path):
    log = tmp_path / "close.log"
    assert fetch(router, "/closelog?log=%s" % log).body == b"x" * 30
    assert closed_count(log) == 1


def test_close_called_for_head(router, tmp_path):
    log = tmp_path / "close.log"
    with Conn(router) as c:
        assert c.request("HEAD", "/closelog?log=%s" % log).status == 200
    assert closed_count(log) == 1


def test_close_called_when_client_disconnects(router, tmp_path):
    log = tmp_path / "close.log"
    c = Conn(router)
    c.send(build_request("GET", "/closelog?log=%s&n=100000&size=65536&delay=0.001" % log,
                         host="x"))
    c.read_head()
    c.abort()
    assert closed_count(log) == 1


def test_close_called_when_iteration_raises(router, tmp_path):
    log = tmp_path / "close.log"
    r = fetch(router, "/raises-iter?at=2&log=%s" % log, allow_truncated=True)
    assert r.status == 200
    assert closed_count(log) == 1


def test_close_called_when_iteration_raises_before_first_byte(router, tmp_path):
    log = tmp_path / "close.log"
    assert fetch(router, "/raises-iter?at=0&log=%s" % log).status == 500
    assert closed_count(log) == 1


# -- wsgi.file_wrapper ----------------------------------------------------

@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("files") / "data.bin"
    p.write_bytes(os.urandom(3 << 20) + b"tail")
    return p


@pytest.mark.parametrize("route", ["/file", "/file-sendfile"])
def test_file_wrapper_serves_file(router, data_file, tmp_path, route):
    log = tmp_path / "close.log"
    r = fetch(router, "%s?path=%s&log=%s" % (route, data_file, log), timeout=30)
    assert r.status == 200
    assert r.header("Content-Length") == str(data_file.stat().st_size)
    assert r.body == data_file.read_bytes()
    assert closed_count(log) == 1, "file not closed after the response"


def test_file_wrapper_head(router, data_file):
    with Conn(router) as c:
        r = c.request("HEAD", "/file-sendfile?path=%s" % data_file)
        assert r.header("Content-Length") == str(data_file.stat().st_size)
        assert c.request("GET", "/hello-list").body == b"Hello, world!\n"


def test_file_wrapper_keep_alive(router, data_file):
    with Conn(router) as c:
        for _ in range(3):
            r = c.request("GET", "/file-sendfile?path=%s" % data_file)
            assert len(r.body) == data_file.stat().st_size


def test_file_wrapper_non_file_object(router):
    r = fetch(router, "/file-bytesio?size=100000")
    assert r.body == bytes(i % 251 for i in range(100000))


def test_file_wrapper_sends_from_the_files_position(router, data_file):
    data = data_file.read_bytes()
    r = fetch(router, "/file-kind?kind=offset&path=%s&offset=1000" % data_file, timeout=30)
    assert r.status == 200 and r.body == data[1000:]


@pytest.mark.parametrize("kind", ["bytesio", "pipe", "readonly"])
def test_file_wrapper_over_what_sendfile_cannot_send_is_read(router, kind):
    """No fileno() (BytesIO), a descriptor that is no regular file (a pipe), no
    close() at all: the wrapper is read in blocks like any iterable."""
    r = fetch(router, "/file-kind?kind=%s&size=60000" % kind)
    assert r.status == 200 and r.body == bytes(i % 251 for i in range(60000)), (r, len(r.body))


def test_file_wrapper_read_failing_midway_cuts_and_closes(router, tmp_path):
    log = tmp_path / "close.log"
    with Conn(router) as c:
        c.send(build_request("GET", "/file-kind?kind=flaky&size=20000&log=%s" % log))
        r = c.response(allow_truncated=True)
        assert r.status == 200 and r.truncated and r.body == b"x" * 20000, (r, len(r.body))
        assert c.closed_within(scaled(3))
    assert closed_count(log) == 1


def test_file_wrapper_block_size_must_be_positive(router):
    r = fetch(router, "/file-kind?kind=blksize0")
    assert r.status == 500, r


def test_file_wrapper_uses_sendfile(server, tmp_path):
    # Without sendfile, serving 64 MiB in 4 KiB blocks takes >= 8192 read()
    # calls in the server process; sendfile needs a few hundred calls at most.
    srv = server("router:app", "--workers", "1")
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    before = proc_io(srv.pid)["syscr"]
    r = fetch(srv, "/file-sendfile?path=%s&blk=4096" % big, timeout=60)
    after = proc_io(srv.pid)["syscr"]
    assert len(r.body) == 64 << 20
    assert after - before < 2048, "%d read-type syscalls for a 64 MiB file: no sendfile?" % (
        after - before)


# -- streaming -------------------------------------------------------------

def test_generator_is_streamed(router, tmp_path):
    # The app's generator waits for `gate` after its first chunk: the first
    # chunk must reach the client while the generator is still running.
    gate = tmp_path / "gate"
    with Conn(router) as c:
        c.send(build_request("GET", "/stream?n=3&gate=%s" % gate, host="x"))
        c.read_head(timeout=5)
        got = b""
        deadline = time.monotonic() + scaled(5)
        while b"chunk 0\n" not in got and time.monotonic() < deadline:
            data = c.poll_data(0.2)
            if data:
                got += data
        assert b"chunk 0\n" in got, "first chunk not sent while the generator runs: %r" % got
        gate.write_text("go")
        tail = b""
        while b"0\r\n\r\n" not in got + tail:
            data = c.poll_data(scaled(5))
            assert data, "stream stalled after the gate opened"
            tail += data
    body = got + tail
    assert b"GATE-TIMEOUT" not in body and b"chunk 2\n" in body


def test_streamed_chunks_arrive_over_time(router):
    with Conn(router) as c:
        c.send(build_request("GET", "/stream?n=4&delay=0.3", host="x"))
        t0 = time.monotonic()
        c.read_head(timeout=5)
        first = time.monotonic() - t0
        r_rest = b""
        while b"0\r\n\r\n" not in r_rest:
            data = c.poll_data(scaled(5))
            assert data
            r_rest += data
        total = time.monotonic() - t0
    assert first < total - 0.5, "head arrived only at the end (%.2fs of %.2fs)" % (first, total)


# -- exc_info ----------------------------------------------------------------

def test_exc_info_replaces_headers_before_sending(router):
    r = fetch(router, "/excinfo?mode=replace")
    assert r.status == 500
    assert r.header("X-Error") == "handled" and r.header("X-First") is None, r.headers
    assert r.body == b"custom error page"


def test_exc_info_after_headers_sent_cuts_response(router):
    with Conn(router) as c:
        c.send(build_request("GET", "/excinfo?mode=after_headers", host="x"))
        r = c.response(allow_truncated=True)
        assert r.status == 200 and r.truncated, r
        assert b"partial body" in r.body and b"should never" not in r.body
        assert c.closed_within(scaled(3))
    wait_for(lambda: "late-error-after-headers" in router.stderr_text(), 5,
             what="the re-raised error in the log")


def test_start_response_twice_without_exc_info_is_an_error(router):
    r = fetch(router, "/excinfo?mode=double")
    assert r.status == 500 and b"should not get here" not in r.body


# -- app errors ---------------------------------------------------------------

@pytest.fixture
def one_worker(server):
    return server("router:app", "--workers", "1")


@pytest.mark.parametrize("where", ["before", "after_start"])
def test_exception_before_body_is_500_and_logged(one_worker, where):
    r = fetch(one_worker, "/raises?where=" + where)
    assert r.status == 500
    text = wait_for(lambda: "boom-" in one_worker.stderr_text() and one_worker.stderr_text(),
                    5, what="the traceback in the log")
    assert "Traceback (most recent call last)" in text
    assert "GorgonTestError" in text and "boom-%s" % where.replace("_", "-") in text
    for _ in range(5):
        assert fetch(one_worker, "/hello").status == 200, "worker stopped serving"


def test_500_keeps_connection_usable_or_closes_cleanly(one_worker):
    with Conn(one_worker) as c:
        r = c.request("GET", "/raises")
        assert r.status == 500
        if r.has_token("Connection", "close"):
            assert c.closed_within(scaled(3))
        else:
            assert c.request("GET", "/hello").status == 200


def test_exception_in_iteration_before_first_byte_is_500(one_worker):
    r = fetch(one_worker, "/raises-iter?at=0")
    assert r.status == 500 and b"part" not in r.body


def test_exception_after_first_byte_closes_connection(one_worker):
    with Conn(one_worker) as c:
        c.send(build_request("GET", "/raises-iter?at=2", host="x"))
        r = c.response(allow_truncated=True)
        assert r.status == 200
        assert r.truncated, "a failed response must not end with the last-chunk marker"
        assert r.body == b"part 0\npart 1\n"
        assert c.closed_within(scaled(3))
    wait_for(lambda: "boom-in-iteration-at-2" in one_worker.stderr_text(), 5,
             what="the traceback in the log")
    for _ in range(3):
        assert fetch(one_worker, "/hello").status == 200


def test_many_errors_do_not_kill_the_worker(one_worker):
    for i in range(30):
        assert fetch(one_worker, "/raises").status == 500
    assert fetch(one_worker, "/hello").status == 200
    assert one_worker.running()
