"""--reload (development): an edit to a watched file reloads the server as
SIGHUP does, so the next requests see the change; the include and exclude
patterns decide what is watched; off by default. Each wait is bounded."""
import re
import time

import pytest

from conftest import fetch, scaled

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
