"""A stop under load loses nothing: every connection that the kernel accepted
is answered, none is reset, the exit status is 0; in each mode, for WSGI and
ASGI. A second SIGTERM stops faster and still exits 0."""
import signal
import time

import pytest

from conftest import fetch, scaled
from stopload import run_stop_under_load
from test_lifecycle import slow_request_in_thread

MODES = [
    pytest.param(("--mode", "interpreters"), id="interpreters"),
    pytest.param(("--mode", "threads"), id="threads"),
    pytest.param(("--mode", "processes"), id="processes"),
    pytest.param(("--mode", "interpreters", "--processes", "2"), id="processes-x-interpreters"),
    pytest.param(("--mode", "interpreters", "--reuse-port"), id="reuse-port"),
]
APPS = [pytest.param(("router:app", b"/hello"), id="wsgi"), pytest.param(("asgi_app:app", b"/fixed"), id="asgi")]


def assert_nothing_lost(tally, rc, srv):
    c = tally.counts
    assert c["ok"] > 50, "the load did not run: %r\n%s" % (c, srv.describe())
    assert c["reset"] == 0 and c["failed"] == 0, "%r\n%s\n%s" % (c, "\n".join(tally.notes), srv.describe())
    assert rc == 0, "exit code %s\n%s" % (rc, srv.describe())


@pytest.mark.tsan
@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_under_load_loses_nothing(server, app, mode):
    srv = server(app[0], "--workers", "2", *mode)
    tally, rc = run_stop_under_load(srv, signal.SIGTERM, path=app[1])
    assert_nothing_lost(tally, rc, srv)


@pytest.mark.tsan
@pytest.mark.parametrize("mode", [pytest.param(("--mode", "interpreters"), id="interpreters"),
                                  pytest.param(("--mode", "processes"), id="processes")])
def test_second_sigterm_stops_faster_and_exits_0(server, tmp_path, mode):
    """gunicorn's and uvicorn's convention: a second SIGTERM stops waiting for
    in-flight requests; the exit status stays 0."""
    srv = server("router:app", "--workers", "1", "--graceful-timeout", "30", *mode)
    slow_request_in_thread(srv, 20, tmp_path / "started")
    srv.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.running(), "the first SIGTERM did not wait for the in-flight request"
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(15)
    assert time.monotonic() - t0 < scaled(5), "the second SIGTERM did not hurry the stop"
    assert rc == 0, "exit code %s\n%s" % (rc, srv.describe())


@pytest.mark.parametrize("mode", ["interpreters", "processes"])
def test_two_sigterms_back_to_back_exit_0(server, mode):
    """A second SIGTERM that lands while the server is already leaving does not
    kill it with the signal (exit status -15)."""
    codes = []
    for _ in range(6):
        srv = server("hello:app", "--workers", "2", "--mode", mode)
        assert fetch(srv, "/").status == 200
        srv.send_signal(signal.SIGTERM)
        time.sleep(0.05 * len(codes))  # from at once to late in the shutdown
        srv.send_signal(signal.SIGTERM)
        codes.append(srv.wait_exit(20))
    assert codes == [0] * 6, codes
