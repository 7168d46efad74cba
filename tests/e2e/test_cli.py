"""Command line: --version, --help, start-up log, option handling."""
import datetime
import os
import re

import pytest

from conftest import (LISTEN_RE, LOG_LINE_RE, READY_RE, CRASH_CODES, fetch, run_gorgon,
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
    out = r.stdout.decode()
    assert re.fullmatch(r"gorgon \d+\.\d+\.\d+\S*\n?", out), repr(out)


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
    ready_idx = [i for i, l in enumerate(lines) if READY_RE.search(l)]
    listen_idx = [i for i, l in enumerate(lines) if LISTEN_RE.search(l)]
    assert sorted(srv.ready_workers()) == [0, 1], lines
    assert len(listen_idx) == 1, lines
    assert max(ready_idx) < listen_idx[0], "workers must be ready before 'Listening at'"
    assert "Listening at: http://127.0.0.1:%d" % srv.port in lines[listen_idx[0]]
    assert fetch(srv, "/").status == 200


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


@pytest.mark.parametrize("level,hidden", [
    ("debug", ()), ("info", ("DEBUG",)), ("warning", ("DEBUG", "INFO")),
    ("error", ("DEBUG", "INFO", "WARNING"))])
def test_log_level(server, level, hidden):
    srv = server("hello:app", "--log-level", level, wait="port")
    assert fetch(srv, "/").status == 200
    assert srv.stop() == 0
    levels = [m.group(3).upper() for m in
              (LOG_LINE_RE.fullmatch(l) for l in srv.stderr_text().splitlines()) if m]
    shown = sorted(set(levels) & set(hidden))
    assert not shown, "--log-level %s still logs %s:\n%s" % (level, shown, srv.stderr_text())


def test_bad_log_level_is_rejected():
    r = run_gorgon("hello:app", "--log-level", "chatty")
    assert r.returncode != 0 and r.returncode not in CRASH_CODES, (r.returncode, r.stderr)
