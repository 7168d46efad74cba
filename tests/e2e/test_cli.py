"""Command line: --version, --help, start-up log, option handling."""
import datetime
import os
import re
import sys
import sysconfig
import time

import pytest

from conftest import (ALL_READY_RE, LISTEN_RE, LOG_LINE_RE, READY_RE, CRASH_CODES, fetch, run_gorgon,
                      utcnow)

OPTIONS = ["--bind", "--workers", "--chdir", "--pythonpath", "--log-level", "--access-log",
           "--keep-alive", "--graceful-timeout", "--header-timeout", "--limit-request-line",
           "--limit-request-fields", "--limit-request-field-size", "--limit-request-body",
           "--max-connections", "--write-high-water", "--version", "--mode", "--processes",
           "--no-pure-fallback", "--probe-timeout", "--proxy-protocol", "--proxy-protocol-bind",
           "--forwarded-allow-ips"]


def test_version():
    r = run_gorgon("--version")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert re.fullmatch(r"gorgon \d+\.\d+\.\d+\S* \(gorgon-server\)", lines[0]), lines
    assert lines[1] == "Python: CPython %s (%s)" % (sys.version.split()[0], sys.executable), lines
    assert lines[2] == "own-GIL sub-interpreters: yes", lines
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED")) and not sys._is_gil_enabled()
    assert lines[3].startswith("free-threading: %s" % ("yes" if free else "no")), lines
    assert len(lines) == 4, lines


def test_help_lists_every_option():
    r = run_gorgon("--help")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    missing = [o for o in OPTIONS if not re.search(re.escape(o) + r"(?![\w-])", out)]
    assert not missing, "--help does not mention %s:\n%s" % (missing, out)
    assert "MODULE:ATTR" in out or "module:attr" in out.lower() or "APP" in out, out


def test_no_app_argument_is_a_usage_error():
    r = run_gorgon()
    assert r.returncode not in (0,) and r.returncode not in CRASH_CODES, r.returncode
    assert r.stderr.strip() or r.stdout.strip()


def test_bad_option_value_is_rejected():
    r = run_gorgon("hello:app", "--workers", "lots")
    assert r.returncode != 0 and r.returncode not in CRASH_CODES, (r.returncode, r.stderr)
    assert b"workers" in r.stderr + r.stdout


def test_startup_log(server):
    srv = server("hello:app", "--workers", "2")
    lines = srv.stderr_text().splitlines()
    assert lines, "no log output"
    now = utcnow()
    for line in lines:
        m = LOG_LINE_RE.fullmatch(line)
        assert m, "log line not in the [time +0000] [pid] [LEVEL] format: %r" % line
        assert int(m.group(2)) == srv.pid, line
        ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.timezone.utc)
        assert abs((now - ts).total_seconds()) < 120, "timestamp not UTC now: %r" % line
    ready = {int(m.group(1)): i for i, l in enumerate(lines) for m in [READY_RE.search(l)] if m}
    listen_idx = [i for i, l in enumerate(lines) if LISTEN_RE.search(l)]
    all_idx = [i for i, l in enumerate(lines) if ALL_READY_RE.search(l)]
    assert sorted(ready) == [0, 1], lines
    assert len(listen_idx) == 1 and len(all_idx) == 1, lines
    # The address as soon as the first worker answers, then the others as they join.
    assert ready[0] < listen_idx[0] < ready[1] < all_idx[0], lines
    assert "Listening at: http://127.0.0.1:%d" % srv.port in lines[listen_idx[0]]
    assert fetch(srv, "/").status == 200


def test_startup_log_in_processes_mode(server):
    srv = server("hello:app", "--mode", "processes", "--workers", "2")
    lines = srv.stderr_text().splitlines()
    ready = {int(m.group(1)): i for i, l in enumerate(lines) for m in [READY_RE.search(l)] if m}
    listen_idx = [i for i, l in enumerate(lines) if LISTEN_RE.search(l)]
    all_idx = [i for i, l in enumerate(lines) if "2 worker processes ready" in l]
    assert sorted(ready) == [0, 1] and len(listen_idx) == 1 and len(all_idx) == 1, lines
    assert ready[0] < listen_idx[0] < ready[1] < all_idx[0], lines


SLOW_SECOND_WORKER = """
import time
import gorgon

if gorgon.worker_id == 1:
    time.sleep(float(__import__("os").environ.get("SLOW_IMPORT", "3")))


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"worker %d\\n" % gorgon.worker_id]
"""


def test_listening_is_logged_when_the_first_worker_answers(server, tmp_path):
    """Worker 0 serves while worker 1 still imports: the address is in the log by then,
    and a SIGTERM at that moment is logged after it."""
    (tmp_path / "slow_second.py").write_text(SLOW_SECOND_WORKER)
    srv = server("slow_second:app", "--mode", "interpreters", "--workers", "2", "--chdir",
                 str(tmp_path), wait=None, env={"SLOW_IMPORT": "3"})
    deadline = time.monotonic() + 20
    while not LISTEN_RE.search(srv.stderr_text()):
        assert srv.running() and time.monotonic() < deadline, srv.describe()
        time.sleep(0.02)
    r = fetch(srv, "/")
    assert r.status == 200 and r.body == b"worker 0\n", r.body
    assert sorted(srv.ready_workers()) == [0], srv.stderr_text()
    assert srv.stop() == 0, srv.describe()
    lines = srv.stderr_text().splitlines()
    listen = [i for i, l in enumerate(lines) if LISTEN_RE.search(l)]
    sigterm = [i for i, l in enumerate(lines) if "SIGTERM received" in l]
    assert len(listen) == 1 and len(sigterm) == 1 and listen[0] < sigterm[0], lines


@pytest.mark.parametrize("n", [1, 3])
def test_workers_option(server, n):
    srv = server("hello:app", "--workers", str(n))
    assert sorted(srv.ready_workers()) == list(range(n)), srv.stderr_text()
    assert fetch(srv, "/").body == b"Hello, world!\n"


def test_default_workers_is_number_of_cores(server):
    srv = server("hello:app", workers=None)
    cores = {os.cpu_count(), len(os.sched_getaffinity(0))}
    assert len(srv.ready_workers()) in cores, srv.stderr_text()


def test_chdir(server, tmp_path):
    d = tmp_path / "wd"
    d.mkdir()
    srv = server("echo:app", "--chdir", str(d))
    assert os.path.realpath(fetch(srv, "/").json()["cwd"]) == os.path.realpath(d)


def test_pythonpath_comma_separated(server, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "gt_pp_helper.py").write_text("MESSAGE = b'from the second pythonpath dir'\n")
    (a / "gt_pp_app.py").write_text(
        "from wsgiref.validate import validator\n"
        "from gt_pp_helper import MESSAGE\n"
        "def _app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [MESSAGE]\n"
        "app = validator(_app)\n")
    srv = server("gt_pp_app:app", "--pythonpath", "%s,%s" % (a, b))
    assert fetch(srv, "/").body == b"from the second pythonpath dir"


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_level(server, level):
    """A run that logs at INFO (start-up), WARNING (--max-connections beyond
    the open-file limit) and ERROR (an application exception): each level at
    or above the threshold is shown, each below it hidden. Nothing in the
    server logs at DEBUG, so debug must show everything the others show."""
    order = ["DEBUG", "INFO", "WARNING", "ERROR"]
    srv = server("router:app", "--log-level", level, "--max-connections", "1000000000", wait="port")
    assert fetch(srv, "/hello").status == 200
    assert fetch(srv, "/raises").status == 500
    assert srv.stop() == 0
    text = srv.stderr_text()
    levels = {m.group(3).upper() for m in (LOG_LINE_RE.fullmatch(l) for l in text.splitlines()) if m}
    at = order.index(level.upper())
    shown = sorted(levels & set(order[:at]))
    assert not shown, "--log-level %s still logs %s:\n%s" % (level, shown, text)
    missing = sorted({"INFO", "WARNING", "ERROR"} - set(order[:at]) - levels)
    assert not missing, "--log-level %s hides %s:\n%s" % (level, missing, text)


def test_bad_log_level_is_rejected():
    r = run_gorgon("hello:app", "--log-level", "chatty")
    assert r.returncode != 0 and r.returncode not in CRASH_CODES, (r.returncode, r.stderr)
