"""Framework tier: real apps on Flask, Django, Starlette, Quart, Falcon, Bottle
and FastAPI from PyPI (requirements-frameworks.txt, in .venv-frameworks),
served by the real server over real sockets, in the mode --mode auto picks and
forced into every mode each framework supports.

The server process helpers are tests/e2e/conftest.py's (loaded here under
another name, so both tiers keep one implementation). Each test module starts
one server per mode (module scope) and runs its requests against it; at
teardown the server must stop with exit code 0 and its log must hold no
traceback, no ERROR and no CRITICAL line.
"""
import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
FW_APPS = HERE / "apps"

_spec = importlib.util.spec_from_file_location("gorgon_e2e_helpers", HERE.parent / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
sys.modules["gorgon_e2e_helpers"] = e2e
_spec.loader.exec_module(e2e)

# Every mode a framework can be forced into; FastAPI cannot run in
# sub-interpreters (pydantic_core refuses them), so its tests drop that one.
MODES = ["auto", "interpreters", "processes", "threads"]
BAD_LOG = ("Traceback", "[ERROR]", "[CRITICAL]", "Fatal Python error")


def start(app, mode, logdir, *args, env=None, workers=2):
    margs = [] if mode == "auto" else ["--mode", mode]
    s = e2e.Server(app, ["--pythonpath", str(FW_APPS), *margs, *args], env=env, logdir=logdir,
                   workers=workers)
    s.requested_mode = mode
    s.start()
    s.wait_ready(timeout=60)
    return s


def finish(s):
    """Teardown: a graceful stop with exit code 0 and a clean log."""
    rc = s.stop(timeout=30) if s.running() else s.proc.poll()
    text = s.stderr_text()
    bad = [l for l in text.splitlines() if any(m in l for m in BAD_LOG)]
    assert rc == 0 and not bad, "%s\n(exit %s; bad lines: %s)" % (s.describe(200), rc, bad[:5])


def served_mode(s):
    """The mode the startup log says is in force."""
    lines = [l for l in s.stderr_text().splitlines() if "] mode " in l]
    assert len(lines) == 1, s.describe()
    return lines[0].split("] mode ", 1)[1].split(":", 1)[0], lines[0]


def server_fixture(app, auto_expected, modes=MODES, env=None, before=None):
    """A module-scoped fixture: one server per mode in `modes`."""

    @pytest.fixture(scope="module", params=modes)
    def srv(request, tmp_path_factory):
        logdir = tmp_path_factory.mktemp(app.split(":")[0] + "-" + request.param)
        extra = dict(env or {})
        if before:
            extra.update(before(logdir) or {})
        s = start(app, request.param, logdir, env=extra)
        s.auto_expected = auto_expected
        yield s
        finish(s)

    return srv


@pytest.fixture
def client(srv):
    with httpx.Client(base_url="http://%s:%d" % srv.addr, timeout=20) as c:
        yield c


def assert_mode(srv, client, who_path="/who"):
    """The startup log and the app itself agree on the mode expected."""
    mode, line = served_mode(srv)
    want = srv.auto_expected if srv.requested_mode == "auto" else srv.requested_mode
    assert mode == want, line
    if srv.requested_mode == "auto":
        assert "auto:" in line, line
    seen = [client.get(who_path).json() for _ in range(4)]
    assert {j["mode"] for j in seen} == {want}, seen
    if want == "interpreters":
        assert all(j["interp"] != 0 and j["pid"] == srv.pid for j in seen), seen
    elif want == "processes":
        assert all(j["interp"] == 0 and j["pid"] != srv.pid for j in seen), seen
    else:
        assert all(j["interp"] == 0 and j["pid"] == srv.pid for j in seen), seen
    return line
