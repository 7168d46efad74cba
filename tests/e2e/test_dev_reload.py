"""--reload (development): an edit to a watched file reloads the server as
SIGHUP does, so the next requests see the change; the include and exclude
patterns decide what is watched; off by default. Each wait is bounded."""
import re
import subprocess
import sys
import time

import pytest

from conftest import REPO, fetch, scaled, server_env

APP = '''\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{version}"]
'''

INTERPRETERS = pytest.param(("--mode", "interpreters"), id="interpreters")
PROCS_X_INTERPS = pytest.param(("--mode", "interpreters", "--processes", "2"), id="processes-x-interpreters")
THREADS = pytest.param(("--mode", "threads"), id="threads")


def write_app(tmp_path, version):
    (tmp_path / "reloadable.py").write_text(APP.format(version=version))


def start(server, tmp_path, *args):
    write_app(tmp_path, "one")
    srv = server("reloadable:app", "--workers", "2", "--pythonpath", str(tmp_path), "--reload",
                 "--reload-dir", str(tmp_path), *args)
    wait_until(lambda: "--reload: watching" in srv.stderr_text(), "the watcher", srv)
    return srv


def wait_until(cond, what, srv, timeout=30):
    deadline = time.monotonic() + scaled(timeout)
    while not cond():
        assert srv.running(), srv.describe()
        assert time.monotonic() < deadline, "no %s after %.0fs\n%s" % (what, scaled(timeout), srv.describe())
        time.sleep(0.05)


def body(srv):
    r = fetch(srv.addr, "/")
    assert r.status == 200, (r.status, r.body)
    return r.body


@pytest.mark.parametrize("mode", [INTERPRETERS, PROCS_X_INTERPS, THREADS])
def test_an_edit_is_served_by_the_next_requests(server, tmp_path, mode):
    srv = start(server, tmp_path, *mode)
    assert body(srv) == b"one"
    # Same size, within the same second as the first write most likely: the
    # stale byte-code would be taken but for the watcher dropping it.
    write_app(tmp_path, "two")
    wait_until(lambda: body(srv) == b"two", "new code in the answers", srv)
    assert re.search(r"--reload: reloadable\.py changed: reloading", srv.stderr_text()), srv.describe()
    # and again
    write_app(tmp_path, "six")
    wait_until(lambda: body(srv) == b"six", "the second edit in the answers", srv)
    assert srv.stop() == 0, srv.describe()


def test_include_and_exclude_patterns(server, tmp_path):
    srv = start(server, tmp_path, "--reload-include", "*.txt", "--reload-exclude", "skip_*")
    (tmp_path / "skip_me.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("a note\n")
    write_app(tmp_path, "two")
    wait_until(lambda: body(srv) == b"two", "new code in the answers", srv)
    changed = " ".join(re.findall(r"--reload: (.*) changed: reloading", srv.stderr_text()))
    assert "notes.txt" in changed and "reloadable.py" in changed, changed
    assert "skip_me" not in changed, changed
    assert srv.stop() == 0, srv.describe()


def test_off_by_default(server, tmp_path):
    write_app(tmp_path, "one")
    srv = server("reloadable:app", "--workers", "1", "--pythonpath", str(tmp_path), workers=1)
    assert body(srv) == b"one"
    write_app(tmp_path, "two")
    # Nothing watches: the answer stays until a reload is asked for.
    for _ in range(10):
        assert body(srv) == b"one"
        time.sleep(0.05)
    assert "--reload" not in srv.stderr_text(), srv.describe()
    assert srv.stop() == 0, srv.describe()


def test_without_watchfiles_it_polls(server, tmp_path):
    """Without the watchfiles package the watcher polls (twice a second) and
    says so; an edit is still served, a file in an excluded directory is not
    a change."""
    hide = tmp_path / "hide"
    (hide / "watchfiles").mkdir(parents=True)
    (hide / "watchfiles" / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    env = {"PYTHONPATH": str(hide) + ":" + server_env()["PYTHONPATH"]}
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    write_app(app_dir, "one")
    srv = server("reloadable:app", "--workers", "1", "--pythonpath", str(app_dir), "--reload",
                 "--reload-dir", str(app_dir), "--reload-exclude", "skipped", env=env, workers=1)
    wait_until(lambda: "--reload: watching" in srv.stderr_text(), "the watcher", srv)
    assert "(polling every 0.5s (pip install watchfiles for inotify))" in srv.stderr_text(), srv.describe()
    assert body(srv) == b"one"
    (app_dir / "skipped").mkdir()
    (app_dir / "skipped" / "inside.py").write_text("x = 1\n")
    write_app(app_dir, "two")
    wait_until(lambda: body(srv) == b"two", "new code in the answers", srv)
    changed = " ".join(re.findall(r"--reload: (.*) changed: reloading", srv.stderr_text()))
    assert "reloadable.py" in changed and "inside" not in changed, changed
    assert srv.stop() == 0, srv.describe()


def test_watcher_whose_server_is_not_its_parent_ends_at_once(tmp_path):
    """The watcher only ever signals the process that started it."""
    r = subprocess.run([sys.executable, "-m", "gorgon._watch", "--server", "1", "--dir", str(tmp_path),
                        "--include", "*.py"], cwd=str(REPO), env=server_env(), capture_output=True,
                       timeout=scaled(30))
    assert r.returncode == 0 and r.stderr == b"", r
