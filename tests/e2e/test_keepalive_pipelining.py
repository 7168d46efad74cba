"""Keep-alive, pipelining (responses in order), idle timeout, unread bodies."""
import resource
import time

import pytest

from conftest import Conn, build_request, chunked, in_threads, proc_rss_kib, read_lines, scaled, wait_for


def test_keep_alive_sequential_requests(router):
    with Conn(router) as c:
        ports = set()
        for i in range(20):
            r = c.request("GET", "/echo?i=%d" % i)
            assert r.status == 200 and r.json()["environ"]["QUERY_STRING"] == "i=%d" % i
            assert not r.has_token("Connection", "close")
            ports.add(r.json()["environ"]["REMOTE_PORT"])
        assert ports == {str(c.local_port)}, "requests did not share one connection"


def test_pipelined_requests_answered_in_order(router):
    with Conn(router) as c:
        c.send(b"".join(build_request("GET", "/echo/%d" % i, host="x") for i in range(20)))
        for i in range(20):
            r = c.response()
            assert r.json()["environ"]["PATH_INFO"] == "/echo/%d" % i


def test_pipelined_slow_then_fast_in_order(router):
    with Conn(router) as c:
        c.send(build_request("GET", "/slow?s=0.5", host="x") +
               build_request("GET", "/hello-list", host="x") +
               build_request("GET", "/stream?n=2&delay=0.2", host="x") +
               build_request("GET", "/echo/last", host="x"))
        assert c.response().body == b"slept 0.5\n"
        assert c.response().body == b"Hello, world!\n"
        assert c.response().body == b"chunk 0\nchunk 1\n"
        assert c.response().json()["environ"]["PATH_INFO"] == "/echo/last"


def test_pipelined_requests_with_bodies(router):
    reqs = [build_request("POST", "/echo/cl", [("Content-Length", "5")], b"first", host="x"),
            build_request("POST", "/echo/te", [("Transfer-Encoding", "chunked")],
                          chunked(b"second body", 4), host="x"),
            build_request("POST", "/echo/empty", [("Content-Length", "0")], b"", host="x"),
            build_request("POST", "/echo/cl2", body=b"third!", host="x")]
    with Conn(router) as c:
        c.send(b"".join(reqs))
        bodies = [c.response().json()["body"] for _ in reqs]
    assert bodies == ["first", "second body", "", "third!"]


def test_pipeline_split_across_writes(router):
    data = b"".join(build_request("GET", "/echo/%d" % i, host="x") for i in range(5))
    with Conn(router) as c:
        c.send_slowly(data, step=7, pause=0.002)
        for i in range(5):
            assert c.response().json()["environ"]["PATH_INFO"] == "/echo/%d" % i


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_unread_request_body_is_not_a_request(router, framing):
    # The app never reads the body; whatever the body looks like, it must not
    # be parsed as a request (the server discards it, or closes).
    smuggled = b"GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    if framing == "chunked":
        first = build_request("POST", "/echo/first?noread=1",
                              [("Transfer-Encoding", "chunked")], chunked(smuggled, 16), host="x")
    else:
        first = build_request("POST", "/echo/first?noread=1", body=smuggled, host="x")
    with Conn(router) as c:
        c.send(first)
        r = c.response()
        assert r.json()["environ"]["PATH_INFO"] == "/echo/first"
        if r.has_token("Connection", "close"):
            assert c.closed_within(scaled(3))
            return
        c.send(build_request("GET", "/echo/second", host="x"))
        r2 = c.response()
        assert r2.json()["environ"]["PATH_INFO"] == "/echo/second", \
            "the unread body was parsed as a request"
        assert c.poll_data(0.3) is None, "extra response"


@pytest.mark.parametrize("size", [10, 300000])
def test_partially_read_body_then_next_request(router, size):
    """The app reads 3 bytes of the body; the rest is dropped, not parsed as a
    request, and the pipelined request after it is answered on the same
    connection (a WSGI body is received before the app runs, so nothing
    forces a close)."""
    body = (b"abcdefghij" * (size // 10 + 1))[:size]
    with Conn(router) as c:
        c.send(build_request("POST", "/inputs?mode=partial&n=3", body=body, host="x") +
               build_request("GET", "/echo/next", host="x"))
        r = c.response()
        assert r.status == 200 and r.json()["pieces"] == ["abc"], r
        assert not r.has_token("Connection", "close"), "connection closed after a partly read body"
        r2 = c.response()
        assert r2.status == 200, r2
        assert r2.json()["environ"]["PATH_INFO"] == "/echo/next"


@pytest.fixture
def ka1(server):
    return server("router:app", "--keep-alive", "1", "--workers", "1")


def test_idle_keep_alive_closed_after_timeout(ka1):
    with Conn(ka1) as c:
        assert c.request("GET", "/hello").status == 200
        t0 = time.monotonic()
        assert not c.closed_within(0.5), "closed right after the response: no keep-alive"
        assert c.closed_within(scaled(3.5)), "idle connection not closed after --keep-alive 1"
        elapsed = time.monotonic() - t0
        assert 0.5 < elapsed < scaled(4), elapsed


def test_keep_alive_timer_restarts_per_request(server):
    """--keep-alive 3, and four idle gaps of 1 s (4 s in all): the connection
    lives only if each request restarts the timer; each gap leaves 2 s to
    spare for a loaded machine."""
    srv = server("router:app", "--keep-alive", "3", "--workers", "1")
    with Conn(srv) as c:
        t0 = time.monotonic()
        for _ in range(4):
            assert c.request("GET", "/hello").status == 200
            time.sleep(1)
        assert c.request("GET", "/hello").status == 200
        assert time.monotonic() - t0 > 3


def test_keep_alive_timeout_does_not_cut_a_slow_response(ka1):
    with Conn(ka1) as c:
        r = c.request("GET", "/slow?s=2")
        assert r.status == 200 and r.body == b"slept 2.0\n"


def test_slow_streaming_response_outlives_keep_alive(ka1):
    with Conn(ka1) as c:
        r = c.request("GET", "/stream?n=3&delay=0.8")
        assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"


@pytest.mark.parametrize("app", [("router:app", "/hello"), ("asgi_app:app", "/fixed")],
                         ids=["wsgi", "asgi"])
def test_request_waiting_on_a_busy_worker_outlives_keep_alive(server, app, tmp_path):
    """A keep-alive connection's request that arrives while the only worker
    runs application code is answered, even when the worker gets back to it
    after --keep-alive has passed: the worker was late, not the client."""
    srv = server(app[0], "--keep-alive", "1", "--workers", "1")
    with Conn(srv) as idle, Conn(srv) as busy:
        assert idle.request("GET", app[1]).status == 200
        marker = tmp_path / "started"
        # 2 s of CPU time: at least as long on the wall clock, past --keep-alive
        # however busy the machine is (the answers may take much longer then).
        busy.send("GET /cpu?ms=2000&marker=%s HTTP/1.1\r\nHost: x\r\n\r\n" % marker)
        wait_for(lambda: read_lines(marker), 10, what="the worker in the application")
        idle.send("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % app[1])
        assert busy.response(timeout=60).status == 200
        assert idle.response(timeout=60).status == 200


@pytest.mark.tsan
def test_many_concurrent_keep_alive_clients(router):
    def client(k):
        with Conn(router) as c:
            for i in range(20):
                r = c.request("POST", "/echo/%d/%d" % (k, i), body=b"%d-%d" % (k, i))
                j = r.json()
                assert j["body"] == "%d-%d" % (k, i), j
                assert j["environ"]["PATH_INFO"] == "/echo/%d/%d" % (k, i)
        return True

    assert all(in_threads(client, [(k,) for k in range(32)]))


@pytest.mark.nosan  # the sanitizer's allocator keeps freed memory on purpose
def test_idle_keep_alive_connections_hold_no_buffers(server):
    """1,000 keep-alive connections, one request each, then held idle: the
    server grows by far less than one read buffer (16 KiB) per connection,
    and every one of them still answers."""
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 200:
        pytest.skip("the open-file limit (%d) is below %d connections" % (hard, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 1000)), hard))
    srv = server("router:app", "--workers", "1", "--keep-alive", "120", "--max-connections", str(n + 100))
    held = []
    try:
        with Conn(srv) as warm:
            assert warm.request("GET", "/hello").status == 200
        before = proc_rss_kib(srv.pid)
        for _ in range(n):
            c = Conn(srv)
            held.append(c)
            assert c.request("GET", "/hello").status == 200
        grown = (proc_rss_kib(srv.pid) - before) / n
        assert grown < 4, "%.1f KiB per idle keep-alive connection" % grown
        for c in held[:: n // 20]:
            assert c.request("GET", "/hello").status == 200, "a held connection stopped answering"
    finally:
        for c in held:
            c.close()
