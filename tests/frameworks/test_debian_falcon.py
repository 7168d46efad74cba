"""Debian's python3-falcon (3.1.1 in Debian 13) compiles falcon whole with
Cython: falcon/app.cpython-313-x86_64-linux-gnu.so beside falcon/app.py, and
so on for 40 modules, each refusing own-GIL sub-interpreters. The pure-Python
fallback loads their sources instead, so auto still picks interpreters; with
--no-pure-fallback auto must pick processes and name the refusing module.

PyPI's falcon wheel compiles only falcon.cyutil.* (no .py beside them) and
catches their ImportError itself, so it needs no fallback (test_falcon.py).
These tests run where GORGON_FW_DEBIAN_PYTHON names a Python that has Debian's
falcon (scripts/test-debian frameworks sets it to /usr/bin/python3.13).
"""
import os
import subprocess

import httpx
import pytest

from conftest import FW_APPS, e2e, finish, served_mode

PY = os.environ.get("GORGON_FW_DEBIAN_PYTHON")
pytestmark = pytest.mark.skipif(not PY, reason="GORGON_FW_DEBIAN_PYTHON (a Python with Debian's falcon) not set")


class DebianServer(e2e.Server):
    def start(self):
        cmd = [PY, "-m", "gorgon", self.app, *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=e2e.REPO, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)
        e2e._ALL_PROCS.append(self.proc)
        return self


def serve(tmp_path, *args):
    s = DebianServer("fw_falcon:app", ["--pythonpath", str(FW_APPS), *args], logdir=tmp_path)
    s.start()
    s.wait_ready(timeout=60)
    return s


def test_debian_falcon_is_compiled_with_source_beside():
    out = subprocess.run([PY, "-c", "import falcon, os; d = os.path.dirname(falcon.__file__); "
                          "print(falcon.__version__, sorted(os.listdir(d)))"],
                         capture_output=True, text=True, check=True).stdout
    assert "app.py" in out and "app.cpython-313-x86_64-linux-gnu.so" in out, out


def test_pure_fallback_keeps_debian_falcon_in_interpreters(tmp_path):
    s = serve(tmp_path)
    try:
        mode, line = served_mode(s)
        assert mode == "interpreters", line
        fallback = [l for l in s.stderr_text().splitlines() if "pure-Python fallback" in l]
        assert len(fallback) == 1 and "falcon.app" in fallback[0], s.describe()
        with httpx.Client(base_url="http://%s:%d" % s.addr, timeout=20) as c:
            assert c.get("/who").json()["mode"] == "interpreters"
            assert c.put("/items/3", json={"a": 1}).status_code == 201
            assert c.get("/items/424242").status_code == 404
    finally:
        finish(s)


def test_without_fallback_auto_picks_processes(tmp_path):
    s = serve(tmp_path, "--no-pure-fallback")
    try:
        mode, line = served_mode(s)
        assert mode == "processes", line
        assert "refuses sub-interpreters" in line and "module falcon." in line, line
        with httpx.Client(base_url="http://%s:%d" % s.addr, timeout=20) as c:
            assert c.get("/who").json()["mode"] == "processes"
    finally:
        finish(s)
