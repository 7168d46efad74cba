"""ASGI 3.0 "http" scopes (tests/apps/asgi_app.py): the scope, streaming both
ways, http.disconnect, backpressure, asyncio in handlers, 500s, HEAD,
HTTP/1.0, keep-alive and pipelining, pathsend, parallel own-GIL workers."""
import hashlib
import json
import os
import time
import uuid

import pytest

from conftest import (Conn, build_request, fetch, host_header, in_threads, log_since, read_lines, scaled,
                      wait_for)

APP = "asgi_app:app"
ONE = ("--workers", "1", "--root-path", "/mnt", "--keep-alive", "10")


@pytest.fixture
def srv(shared_server):
    """One ASGI worker, shared by the tests of this module."""
    return shared_server(APP, *ONE)


# ---- scope ---------------------------------------------------------------------

def test_scope_is_complete(srv):
    with Conn(srv) as c:
        r = c.request("GET", "/scope/caf%C3%A9%2Fx?a=1&b=%20c", headers=[
            ("X-Custom", "One"), ("X-Multi", "first"), ("Accept", "*/*"), ("X-Multi", "second")])
        local_port = c.local_port
    assert r.status == 200, r
    s = r.json()
    assert s["type"] == "http"
    assert s["asgi"]["version"] == "3.0" and "spec_version" in s["asgi"], s["asgi"]
    assert s["http_version"] == "1.1"
    assert s["method"] == "GET"
    assert s["scheme"] == "http"
    assert s["path"] == "/scope/caf\u00e9/x", "path must be percent-decoded UTF-8"
    assert s["raw_path"] == "/scope/caf%C3%A9%2Fx" and s["raw_path_is_bytes"]
    assert s["query_string"] == "a=1&b=%20c" and s["query_string_is_bytes"]
    assert s["root_path"] == "/mnt"
    assert s["headers_are_bytes"]
    assert s["headers"] == [["host", host_header(srv)], ["x-custom", "One"],
                            ["x-multi", "first"], ["accept", "*/*"], ["x-multi", "second"]], \
        "headers: lower-cased names, values untouched, in order, duplicates kept"
    assert s["client"] == ["127.0.0.1", local_port]
    assert s["server"] == ["127.0.0.1", srv.port]
    assert isinstance(s["state"], dict) and s["state"].get("started") is True, \
        "the lifespan state is not in the request scope: %r" % s["state"]
    assert "http.response.pathsend" in s["extensions"], s["extensions"]
    for key in ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path",
                "query_string", "root_path", "headers", "client", "server", "state"):
        assert key in s["keys"], "scope lacks %r" % key


def test_scope_http_1_0_and_post(srv):
    r = fetch(srv, "/scope/x", method="POST", body=b"abc", version="HTTP/1.0")
    assert r.status == 200
    s = r.json()
    assert s["http_version"] == "1.0" and s["method"] == "POST" and s["path"] == "/scope/x"
    assert s["query_string"] == ""


def test_state_is_a_copy_per_request(srv):
    first = fetch(srv, "/state").json()
    second = fetch(srv, "/state").json()
    for j in (first, second):
        assert j["started"] is True, j
        assert j["n"] == 1 and j["had_request_key"] is False, \
            "a request saw another request's changes to scope['state']: %r" % j


# ---- keep-alive, pipelining, framing -----------------------------------------------

def test_keep_alive_and_pipelining_in_order(srv):
    with Conn(srv) as c:
        c.send(build_request("GET", "/sleep?s=0.3") + build_request("GET", "/fixed")
               + build_request("POST", "/echo", body=b"ping-body") + build_request("GET", "/scope/third"))
        a, b, e, d = c.response(), c.response(), c.response(), c.response()
        assert a.status == 200 and "start" in a.json(), a
        assert b.status == 200 and b.body == b"Hello, world!\n"
        assert e.status == 200 and e.body == b"ping-body"
        assert d.json()["path"] == "/scope/third"
        # and the connection is still usable afterwards
        assert c.request("GET", "/fixed").body == b"Hello, world!\n"


def test_chunked_response_without_content_length(srv):
    r = fetch(srv, "/stream?n=3")
    assert r.status == 200 and r.chunked, r
    assert r.header("Content-Length") is None
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_more_body_with_content_length_is_not_chunked(srv):
    r = fetch(srv, "/stream?n=3&length=1")
    assert r.status == 200 and not r.chunked, r
    assert r.header("Content-Length") == "24"
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_streaming_download_first_chunk_before_app_finishes(srv, tmp_path):
    marker = tmp_path / "stream"
    with Conn(srv) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/stream?n=4&delay=0.5&marker=%s" % marker))
        got = b""
        while b"chunk 0\n" not in got:
            data = c.poll_data(scaled(5))
            assert data, "no first chunk within 5s (got %r)" % got
            got += data
        t_first = time.monotonic() - t0
        finished_at_first = "finished" in read_lines(marker)
        while b"0\r\n\r\n" not in got:
            data = c.poll_data(scaled(5))
            assert data, "stream did not end (got %r)" % got
            got += data
        t_end = time.monotonic() - t0
    assert not finished_at_first, "the first chunk only came after the app finished"
    assert t_first < scaled(1.0), "first chunk after %.2fs: the response was buffered" % t_first
    assert t_end >= 1.5, "the app sleeps 4 x 0.5s, yet the stream ended after %.2fs" % t_end
    assert b"chunk 3\n" in got


# ---- request bodies: streaming upload, disconnect ----------------------------------

def test_many_small_chunks_in_one_packet_arrive_intact(srv):
    """200 chunks of 7 bytes in one write: however receive() groups them,
    the body is whole and in order, and only the last message ends it."""
    body = b"".join(b"%06d\n" % i for i in range(200))
    wire = b"".join(b"7\r\n" + body[i:i + 7] + b"\r\n" for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    with Conn(srv) as c:
        c.send(build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]) + wire)
        j = c.response().json()
    assert j["total"] == len(body) and j["sha256"] == hashlib.sha256(body).hexdigest(), j
    assert 1 <= j["chunks"] <= 200, j


def test_streaming_upload_20mib_chunked(srv):
    size = 20 * 1024 * 1024
    body = os.urandom(size)
    piece = 256 * 1024
    with Conn(srv, timeout=60) as c:
        c.send(build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]))
        for i in range(0, size, piece):
            part = body[i:i + piece]
            c.send(b"%x\r\n" % len(part) + part + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.response()
    assert r.status == 200, r
    j = r.json()
    assert j["total"] == size and j["sha256"] == hashlib.sha256(body).hexdigest(), j
    assert j["chunks"] >= 20, "the body came in %d receive() chunks: buffered whole?" % j["chunks"]
    assert j["max_chunk"] <= 2 * 1024 * 1024, \
        "a receive() chunk of %d bytes: the body was buffered before the app got it" % j["max_chunk"]
    assert j["calls"] >= j["chunks"]


def test_receive_gets_first_chunk_before_body_is_complete(srv, tmp_path):
    marker = tmp_path / "upload"
    size = 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    with Conn(srv) as c:
        c.send(build_request("POST", "/upload?marker=%s" % marker,
                             headers=[("Content-Length", str(size))]) + body[:65536])
        wait_for(lambda: any(line.startswith("first ") for line in read_lines(marker)), 5,
                 what="the app to receive the first body chunk while the rest is unsent")
        c.send(body[65536:])
        r = c.response()
    assert r.status == 200
    assert r.json()["total"] == size
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_disconnect_mid_body_gives_http_disconnect(srv, tmp_path):
    marker = tmp_path / "upload"
    c = Conn(srv)
    c.send(build_request("POST", "/upload?marker=%s" % marker,
                         headers=[("Content-Length", "100000")]) + b"x" * 50000)
    wait_for(lambda: read_lines(marker), 5, what="the first body chunk")
    c.close()
    lines = wait_for(lambda: [x for x in read_lines(marker) if x.startswith(("disconnect", "done"))],
                     5, what="the app's receive() to return http.disconnect")
    assert lines[0].startswith("disconnect total="), read_lines(marker)
    assert int(lines[0].split("=")[1]) <= 50000
    assert fetch(srv, "/fixed").status == 200


def test_pending_receive_after_body_gets_disconnect(srv, tmp_path):
    marker = tmp_path / "wait"
    c = Conn(srv)
    c.send(build_request("POST", "/wait-disconnect?marker=%s" % marker, body=b"abc"))
    wait_for(lambda: "body 3" in read_lines(marker), 5, what="the app to read the body")
    time.sleep(0.1)
    assert "got http.disconnect" not in read_lines(marker), "disconnect before the client left"
    c.close()
    wait_for(lambda: "got http.disconnect" in read_lines(marker), 5,
             what="http.disconnect for the pending receive() after the client closed")
    assert read_lines(marker) == ["body 3", "got http.disconnect"]


def test_send_after_disconnect_is_harmless(srv, tmp_path):
    marker = tmp_path / "sad"
    offset = len(srv.stderr_bytes())
    c = Conn(srv)
    c.send(build_request("POST", "/send-after-disconnect?marker=%s" % marker, body=b"abc"))
    time.sleep(0.2)
    c.abort()
    wait_for(lambda: len(read_lines(marker)) >= 2, 5, what="the app's sends after the disconnect")
    assert read_lines(marker) == ["got http.disconnect", "sent ok"], read_lines(marker)
    time.sleep(0.1)
    log = log_since(srv, offset)
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log
    assert fetch(srv, "/fixed").body == b"Hello, world!\n", "the worker no longer serves"


def test_client_leaving_mid_stream_is_harmless(srv, tmp_path):
    marker = tmp_path / "stream"
    offset = len(srv.stderr_bytes())
    c = Conn(srv)
    c.send(build_request("GET", "/stream?n=8&delay=0.1&marker=%s" % marker))
    wait_for(lambda: "sent 1" in read_lines(marker), 5, what="the stream to start")
    c.abort()
    wait_for(lambda: "finished" in read_lines(marker), 5,
             what="the app to run to its end (send() after the client left must not raise)")
    time.sleep(0.1)
    log = log_since(srv, offset)
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log
    assert fetch(srv, "/fixed").status == 200


# ---- backpressure --------------------------------------------------------------------

def read_progress(path):
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_send_blocks_while_client_does_not_read(server, tmp_path):
    s = server(APP, "--workers", "1", "--write-high-water", "65536")
    progress = tmp_path / "progress"
    total = 4096  # x 64 KiB = 256 MiB; the kernel's socket buffers hold a few MiB
    with Conn(s, timeout=30) as greedy:
        greedy.send(build_request("GET", "/big?chunks=%d&yield=1&progress=%s" % (total, progress)))
        time.sleep(1.5)
        p1 = read_progress(progress)
        # the same (only) worker still serves another client meanwhile
        t0 = time.monotonic()
        assert fetch(s, "/fixed", timeout=5).body == b"Hello, world!\n"
        assert fetch(s, "/sleep?s=0.1", timeout=5).status == 200
        assert time.monotonic() - t0 < scaled(2), "another client waited behind the stalled one"
        time.sleep(0.5)
        p2 = read_progress(progress)
        assert progress.exists(), "the app never started streaming"
        assert p2 == p1, "await send() kept completing (%d -> %d) for a client that reads nothing" % (p1, p2)
        assert p2 < 512, "%d x 64 KiB sent to a client that reads nothing" % p2
        # once the client reads, send() resumes
        head = greedy.read_head(timeout=5)
        assert head.status == 200
        want = 16 * 1024 * 1024
        got = len(greedy.buf)
        greedy.buf.clear()
        deadline = time.monotonic() + scaled(20)
        while got < want and time.monotonic() < deadline:
            data = greedy.sock.recv(1 << 20)
            assert data, "connection closed early"
            got += len(data)
        wait_for(lambda: read_progress(progress) > p2, 5,
                 what="the app's send() to resume after the client read")


def test_response_above_high_water_sent_before_first_await(srv):
    """A handler that streams 4 MiB (default --write-high-water: 1 MiB) without
    awaiting anything but send(): the client reads everything, so every
    send() must complete."""
    r = fetch(srv, "/big?chunks=64", timeout=10)
    assert r.status == 200 and len(r.body) == 64 * 65536


# ---- asyncio in handlers ---------------------------------------------------------------

def test_asyncio_sleep_requests_overlap_on_one_worker(srv):
    t0 = time.monotonic()
    a, b, c = in_threads(lambda: fetch(srv, "/sleep?s=1", timeout=10).json(), [()] * 3)
    elapsed = time.monotonic() - t0
    assert a["interp"] == b["interp"] == c["interp"], "one worker expected"
    assert elapsed < scaled(1.8), "3 x asyncio.sleep(1) on one worker took %.2fs: not concurrent" % elapsed
    assert max(x["start"] for x in (a, b, c)) < min(x["end"] for x in (a, b, c))


def test_create_task_and_gather(srv, tmp_path):
    marker = tmp_path / "tasks"
    r = fetch(srv, "/tasks?marker=%s" % marker, timeout=60)
    j = r.json()
    assert j["results"] == [0, 1, 4], "the 3 tasks did not all run at once: %r" % j
    wait_for(lambda: "background done" in read_lines(marker), 5,
             what="a task created by the handler to run after the response")


# ---- errors ------------------------------------------------------------------------------

def test_exception_before_start_is_500_and_keeps_connection(srv):
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        r = c.request("GET", "/raise-before")
        assert r.status == 500, r
        assert r.body, "a 500 with no body"
        assert c.request("GET", "/fixed").body == b"Hello, world!\n"
    log = wait_for(lambda: "raised before" in log_since(srv, offset) and log_since(srv, offset), 5,
                   what="the traceback in the log")
    assert "Traceback" in log and "ValueError: raised before http.response.start" in log, log


def test_exception_after_start_closes_connection(srv):
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        c.send(build_request("GET", "/raise-after"))
        r = c.response(allow_truncated=True)
        assert r.status == 200
        assert r.truncated, "the response looked complete though the app raised mid-body: %r" % r
        assert r.body.startswith(b"partial "), r.body
        assert c.closed_within(scaled(3)), "connection left open after the app raised mid-response"
    wait_for(lambda: "raised after http.response.start" in log_since(srv, offset), 5,
             what="the traceback in the log")
    assert fetch(srv, "/fixed").status == 200


def test_return_without_response_is_500(srv):
    offset = len(srv.stderr_bytes())
    with Conn(srv) as c:
        r = c.request("GET", "/no-response")
        assert r.status == 500, r
        assert c.request("GET", "/fixed").status == 200
    wait_for(lambda: "without sending a response" in log_since(srv, offset), 5,
             what="an error line for the app that returned without responding")


def test_return_mid_response_closes_connection(srv):
    with Conn(srv) as c:
        c.send(build_request("GET", "/partial"))
        r = c.response(allow_truncated=True)
        assert r.status == 200 and r.truncated and r.body == b"partial ", r
        assert c.closed_within(scaled(3))


def test_invalid_message_is_500(srv):
    r = fetch(srv, "/bad-message")
    assert r.status == 500, r
    assert fetch(srv, "/fixed").status == 200


# ---- HEAD and HTTP/1.0 ----------------------------------------------------------------------

def test_head_has_headers_but_no_body(srv):
    with Conn(srv) as c:
        c.send(build_request("HEAD", "/fixed") + build_request("HEAD", "/stream?n=3")
               + build_request("GET", "/fixed"))
        h1 = c.response("HEAD")
        h2 = c.response("HEAD")
        g = c.response()
    assert h1.status == 200 and h1.header("Content-Length") == "14", h1
    assert h2.status == 200 and h2.header("Content-Length") is None
    # no body bytes after a HEAD answer: the GET that follows parses cleanly
    assert g.status == 200 and g.body == b"Hello, world!\n", g


def test_http_1_0_fixed_length(srv):
    with Conn(srv) as c:
        r = c.request("GET", "/fixed", version="HTTP/1.0")
        assert r.status == 200 and r.body == b"Hello, world!\n"
        assert r.header("Content-Length") == "14"
        assert c.closed_within(scaled(3)), "HTTP/1.0 connection without keep-alive left open"


def test_http_1_0_streamed_body_is_not_chunked(srv):
    with Conn(srv) as c:
        r = c.request("GET", "/stream?n=3&delay=0.05", version="HTTP/1.0")
        assert r.status == 200 and not r.chunked, r
        assert r.header("Transfer-Encoding") is None
        assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"
        assert c.eof


# ---- http.response.pathsend ---------------------------------------------------------------

def test_pathsend(srv, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = tmp_path / "file.bin"
    f.write_bytes(data)
    with Conn(srv) as c:
        r = c.request("GET", "/pathsend?path=%s" % f)
        assert r.status == 200, r
        assert r.header("Content-Length") == str(len(data))
        assert r.body == data
        h = c.request("HEAD", "/pathsend?path=%s" % f)
        assert h.status == 200 and h.body == b""
        assert c.request("GET", "/fixed").body == b"Hello, world!\n"


# ---- two workers ------------------------------------------------------------------------------

@pytest.mark.tsan
def test_cpu_bound_handlers_run_in_parallel(shared_server):
    """Each handler waits, holding its GIL and blocking its event loop, for the
    other to have started (tests/apps/_wsgicheck.py meet): they meet only if
    the two interpreters run at the same time."""
    s = shared_server(APP, "--workers", "2")
    fetch(s, "/fixed")
    key = "meet-%s" % uuid.uuid4().hex
    a, b = in_threads(lambda: fetch(s, "/meet?key=%s&n=2&timeout=30" % key, timeout=60).json(),
                      [(), ()])
    assert a["interp"] != b["interp"], "both requests ran in interpreter %s" % a["interp"]
    assert a["tid"] != b["tid"]
    assert a["met"] and b["met"], "the two handlers never ran at the same time: %r %r" % (a, b)
    assert a["gil"] == b["gil"] == "own", (a["gil"], b["gil"])


def test_many_concurrent_clients_two_workers(shared_server):
    s = shared_server(APP, "--workers", "2")

    def client(k):
        seen = set()
        with Conn(s) as c:
            # gorgon spreads connections by keeping a worker that is busy in the
            # application from accepting; two idle, fast workers may legitimately
            # take a burst on one. A CPU-bound first request keeps the accepting
            # worker busy while the other clients connect.
            assert c.request("GET", "/cpu?ms=100").status == 200
            for i in range(10):
                body = b"%d-%d" % (k, i) * 50
                r = c.request("POST", "/echo", body=body)
                assert r.status == 200 and r.body == body
                seen.add(c.request("GET", "/scope/x").json()["interp"])
        return seen

    results = in_threads(client, [(k,) for k in range(8)])
    assert len(set().union(*results)) == 2, "expected both workers to serve: %r" % results
    assert json.loads(fetch(s, "/state").body)["n"] == 1
