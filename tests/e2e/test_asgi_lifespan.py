"""ASGI lifespan (startup, failure, shutdown on SIGTERM, state, --lifespan
auto|on|off) and WSGI/ASGI interface detection with --interface."""
import signal
import threading
import time

import pytest

from conftest import (Conn, build_request, connect, fetch, free_port, read_lines, run_gorgon,
                      scaled, wait_for)


def run_failing(app, *args):
    """Runs the server to completion (it must exit on its own)."""
    return run_gorgon(app, "--workers", "1", "--bind", "127.0.0.1:%d" % free_port(), *args,
                      timeout=30)


# ---- startup ---------------------------------------------------------------------

def test_startup_completes_before_requests_are_served(server, tmp_path):
    log = tmp_path / "lifespan.log"
    s = server("asgi_app:app", "--workers", "1", wait=None,
               env={"ASGI_TEST_LOG": str(log), "ASGI_TEST_STARTUP_DELAY": "1.5"})
    t0 = time.monotonic()
    deadline = t0 + scaled(20)
    while True:  # connect as early as the port allows, during the startup delay
        try:
            c = Conn(s, timeout=20)
            break
        except OSError:
            assert time.monotonic() < deadline and s.running(), s.describe()
            time.sleep(0.01)
    with c:
        c.send(build_request("GET", "/state"))
        r = c.response()
    assert r.status == 200, r
    j = r.json()
    assert j["started"] is True, "a request was served before lifespan startup completed: %r" % j
    assert [x.split()[0] for x in read_lines(log)] == ["startup"]
    assert time.monotonic() - t0 >= 1.0, "served before the 1.5s startup could have finished"


def test_startup_failed_ends_server_with_message(tmp_path):
    p = run_failing("asgi_app:startup_failed")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 3, "exit %s\n%s" % (p.returncode, err)
    assert "database unreachable" in err, err


def test_startup_exception_with_lifespan_on_ends_server(tmp_path):
    p = run_failing("asgi_app:startup_raises", "--lifespan", "on")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 3, "exit %s\n%s" % (p.returncode, err)
    assert "boom in startup" in err, err


def test_app_without_lifespan_support_with_lifespan_on_ends_server(tmp_path):
    p = run_failing("asgi_app:no_lifespan", "--lifespan", "on")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 3, "exit %s\n%s" % (p.returncode, err)
    assert "only http and websocket here" in err, err


def test_lifespan_auto_app_raising_on_lifespan_serves(server):
    s = server("asgi_app:no_lifespan", "--workers", "1")
    r = fetch(s, "/state")
    assert r.status == 200, r
    assert r.json()["started"] is None, "state should be empty without lifespan"
    assert fetch(s, "/fixed").body == b"Hello, world!\n"
    assert s.stop() == 0


def test_lifespan_off_never_calls_lifespan(server, tmp_path):
    log = tmp_path / "lifespan.log"
    s = server("asgi_app:app", "--workers", "1", "--lifespan", "off",
               env={"ASGI_TEST_LOG": str(log)})
    r = fetch(s, "/state")
    assert r.status == 200 and r.json()["started"] is None, r.json()
    assert s.stop() == 0
    assert read_lines(log) == [], "lifespan ran with --lifespan off: %r" % read_lines(log)


def test_shutdown_that_awaits_for_a_while_completes(server, tmp_path):
    """A lifespan shutdown that awaits (1 s here, as closing a pool of
    database connections may) runs to its end in every worker."""
    log = tmp_path / "lifespan.log"
    s = server("asgi_app:app", "--workers", "2",
               env={"ASGI_TEST_LOG": str(log), "ASGI_TEST_SHUTDOWN_DELAY": "1"})
    wait_for(lambda: len(read_lines(log)) == 2, 5, what="both workers' lifespan startup")
    assert fetch(s, "/state").status == 200
    assert s.stop() == 0, s.describe()
    lines = read_lines(log)
    assert sorted(x.split()[0] for x in lines) == ["shutdown", "shutdown", "startup", "startup"], (
        lines, s.describe())
    assert "lifespan shutdown raised" not in s.stderr_text(), s.describe()


def test_lifespan_state_reaches_every_request_as_a_copy(server, tmp_path):
    s = server("asgi_app:app", "--workers", "1")
    with Conn(s) as c:
        for _ in range(3):
            j = c.request("GET", "/state").json()
            assert j == {"had_request_key": False, "n": 1, "started": True}, j
    scope_state = fetch(s, "/scope").json()["state"]
    assert scope_state["started"] is True and scope_state["n"] == 0
    assert isinstance(scope_state["boot_interp"], int)


# ---- shutdown ------------------------------------------------------------------------

@pytest.mark.tsan
def test_shutdown_runs_on_sigterm_after_in_flight_requests(server, tmp_path):
    log = tmp_path / "lifespan.log"
    s = server("asgi_app:app", "--workers", "2", env={"ASGI_TEST_LOG": str(log)})
    wait_for(lambda: len(read_lines(log)) == 2, 5, what="both workers' lifespan startup")
    result = {}

    def run():
        try:
            result["resp"] = fetch(s, "/stream?n=3&delay=0.4&marker=%s" % log, timeout=20)
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: "sent 0" in read_lines(log), 5, what="the streamed response to start")
    s.send_signal(signal.SIGTERM)
    rc = s.wait_exit(30)
    t.join(10)
    lines = read_lines(log)
    assert rc == 0, "exit %s\n%s" % (rc, s.describe())
    assert "error" not in result, "in-flight request failed: %r" % result.get("error")
    assert result["resp"].body == b"chunk 0\nchunk 1\nchunk 2\n"
    starts = {x.split()[1] for x in lines if x.startswith("startup")}
    stops = {x.split()[1] for x in lines if x.startswith("shutdown")}
    assert len(starts) == 2, lines
    assert stops == starts, "lifespan shutdown did not run in every worker: %r" % lines
    served_by = next(x.split()[1] for x in lines if x.startswith("interp "))
    assert lines.index("finished") < lines.index("shutdown " + served_by), \
        "the serving worker's lifespan shutdown ran before its in-flight request finished: %r" % lines
    with pytest.raises(OSError):
        connect(s.addr, timeout=2).close()


# ---- interface detection ----------------------------------------------------------------

@pytest.mark.parametrize("app, args, expect, log_line", [
    ("asgi_app:callable_app", (), b"Hello, world!\n", "interface: ASGI (detected"),
    ("asgi_app:hybrid", (), b"wsgi\n", "interface: WSGI (detected"),
    ("asgi_app:hybrid", ("--interface", "asgi"), b"asgi\n", "interface: ASGI"),
    ("asgi_app:hybrid_marked", (), b"asgi\n", "interface: ASGI (detected"),
    ("asgi_app:hybrid_marked", ("--interface", "wsgi"), b"wsgi\n", "interface: WSGI"),
])
def test_interface_detection_and_override(server, app, args, expect, log_line):
    s = server(app, "--workers", "1", *args)
    path = "/fixed" if app.endswith("callable_app") else "/"
    r = fetch(s, path)
    assert r.status == 200 and r.body == expect, (r, r.body)
    err = s.stderr_text()
    assert log_line in err, err
    if args:
        assert "(detected" not in err.split("interface:")[1].splitlines()[0], \
            "--interface given, yet the log says it was detected"


# ---- shutdown troubles -------------------------------------------------------------

@pytest.mark.parametrize("how,line", [
    ("failed", "worker 0: ASGI lifespan shutdown failed: could not flush the cache"),
    ("raise", "worker 0: ASGI lifespan shutdown failed: RuntimeError: boom in shutdown"),
    ("bad", "worker 0: ASGI lifespan shutdown failed: ValueError: unexpected lifespan message type "
            "'lifespan.shutdown.done'"),
    ("return", None),
])
def test_shutdown_failure_is_logged_and_the_stop_goes_on(server, how, line):
    """A lifespan shutdown that fails, raises or sends a wrong message is one
    error line; the server still stops with exit 0. One that returns without
    a word is no failure."""
    s = server("asgi_app:shutdown_trouble", "--workers", "1", env={"ASGI_TEST_SHUTDOWN": how})
    assert fetch(s, "/fixed").body == b"Hello, world!\n"
    assert s.stop(signal.SIGTERM) == 0, s.describe()
    errors = [x for x in s.stderr_text().splitlines() if "[ERROR]" in x]
    assert errors == ([] if line is None else [errors[0]]) and (line is None or errors[0].endswith(line)), \
        s.stderr_text()


def test_startup_failed_without_a_message(tmp_path):
    p = run_failing("asgi_app:startup_failed_silently")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 3, "exit %s\n%s" % (p.returncode, err)
    assert "ASGI lifespan startup failed: startup failed" in err, err


@pytest.mark.parametrize("mode,code", [("auto", 0), ("on", 3)])
def test_lifespan_that_returns_at_once(server, tmp_path, mode, code):
    """An app whose lifespan returns without a message: with auto it is served
    as one without lifespan; with --lifespan on that is a failed startup."""
    if code == 0:
        s = server("asgi_app:lifespan_returns", "--workers", "1", "--lifespan", mode)
        assert fetch(s, "/fixed").body == b"Hello, world!\n"
        assert s.stop(signal.SIGTERM) == 0
        return
    p = run_failing("asgi_app:lifespan_returns", "--lifespan", mode)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 3, "exit %s\n%s" % (p.returncode, err)
    assert "ASGI lifespan startup failed: the application returned early" in err, err


def test_tasks_left_running_are_cancelled_at_the_stop(server, tmp_path):
    marker = tmp_path / "task"
    s = server("asgi_app:app", "--workers", "1")
    assert fetch(s, "/forever-task?marker=%s" % marker).body == b"started\n"
    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM) == 0, s.describe()
    assert time.monotonic() - t0 < scaled(10)
    assert read_lines(marker) == ["cancelled"]
