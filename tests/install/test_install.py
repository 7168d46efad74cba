"""Install gorgon as a user would and run the `gorgon` command.

A fresh virtual environment made with the CPython that scripts/find-python
picks (or INSTALL_PYTHON=/path/to/python3.N, as the Debian unstable tier
does for each of its Pythons), `pip install CHECKOUT` into it, then the console script serves a WSGI
and an ASGI app from tests/apps and stops on SIGTERM with exit 0. Then
`python -m build` makes the sdist and the wheel (from the sdist, so a file
missing from the sdist fails here), whose metadata and content are checked.

Needs PyPI (pip fetches setuptools for the build). Run: `make test-install`.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "apps"
DIST = "gorgon-server"

# pip and build compile the extension: more than pytest.ini's 60 s for one test on a busy machine.
pytestmark = pytest.mark.timeout(240)


def find_python():
    if os.environ.get("INSTALL_PYTHON"):
        return os.environ["INSTALL_PYTHON"]
    r = subprocess.run([str(REPO / "scripts" / "find-python")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no CPython 3.13: " + r.stderr.strip())
    return r.stdout.strip()


def clean_env(**extra):
    """The user's environment, minus anything pointing into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "GORGON_", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    subprocess.run([find_python(), "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", str(REPO)],
                       cwd=root, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return venv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, deadline):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_installed_package_is_not_the_checkout(venv, tmp_path):
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import gorgon; print(gorgon.__file__)"],
                       cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    installed = Path(r.stdout.strip())
    assert installed.is_relative_to(venv), installed
    assert list(installed.parent.glob("_gorgon.*.so")), "no extension installed in %s" % installed.parent
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", DIST],
                       env=clean_env(), capture_output=True, text=True)
    assert r.returncode == 0 and "Name: %s" % DIST in r.stdout, r.stdout + r.stderr


def wait_for_log(path, text, proc, deadline):
    while text not in path.read_text():
        assert proc.poll() is None, "gorgon exited %s:\n%s" % (proc.returncode, path.read_text())
        assert time.monotonic() < deadline, "no %r in the log:\n%s" % (text, path.read_text())
        time.sleep(0.05)


@pytest.mark.parametrize("app, path", [("hello:app", "/"), ("asgi_app:app", "/fixed")],
                         ids=["wsgi", "asgi"])
def test_console_script_serves_and_stops_on_sigterm(venv, tmp_path, app, path):
    port = free_port()
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(venv / "bin" / "gorgon"), app, "--bind", "127.0.0.1:%d" % port,
                                 "--workers", "2", "--chdir", str(APPS)],
                                cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    url = "http://127.0.0.1:%d" % port
    try:
        wait_for_log(log, "Listening at: " + url, proc, time.monotonic() + 20)
        for _ in range(5):
            assert get(url + path, time.monotonic() + 5) == (200, b"Hello, world!\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "interface: %s" % ("ASGI" if "asgi" in app else "WSGI") in text, text


def test_version_of_the_installed_command(venv, tmp_path):
    r = subprocess.run([str(venv / "bin" / "gorgon"), "--version"], cwd=tmp_path, env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.match(r"gorgon \d+\.\d+\.\d+\S* \(%s\)\nPython: CPython 3\.1[3-9]" % DIST, r.stdout), r.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel `python -m build` makes with this Python."""
    pytest.importorskip("build", reason="`build` is not installed (requirements-dev.txt has it)")
    work = tmp_path_factory.mktemp("build")
    out = work / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                       cwd=work, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (sdist,) = out.glob("gorgon_server-*.tar.gz")
    (wheel,) = out.glob("gorgon_server-*-cp3*-linux_*.whl")
    return sdist, wheel


def test_build_makes_an_sdist_and_a_wheel(dist):
    sdist, wheel = dist
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"setup.py", "pyproject.toml", "src/module.c", "src/server/config.h"} <= names, sorted(names)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = z.read(meta).decode()
        (eps,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = z.read(eps).decode()
    assert any(re.fullmatch(r"gorgon/_gorgon\.cpython-3\d+t?-[^/]*\.so", n) for n in names), names
    assert "Name: %s\n" % DIST in metadata
    assert "Requires-Python: >=3.13\n" in metadata
    assert "Classifier: Programming Language :: Python :: 3.13\n" in metadata
    # The Python this tier tests is one the package says it supports.
    assert "Classifier: Programming Language :: Python :: %d.%d\n" % sys.version_info[:2] in metadata
    assert "Classifier: Operating System :: POSIX :: Linux\n" in metadata
    assert "gorgon = gorgon.__main__:main" in entry_points, entry_points


def test_the_built_wheel_installs_into_a_fresh_venv(dist, tmp_path):
    """The wheel `python -m build` makes for this Python, installed alone
    (no index) into a fresh venv of the same Python: its command runs and
    its extension loads there."""
    wheel = dist[1]
    py = find_python()
    tag = subprocess.run([py, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert tag == "cp%d%d" % sys.version_info[:2], "pytest runs on %s, the venv would be %s" % (sys.version, tag)
    assert "-%s-" % tag in wheel.name, wheel.name
    venv = tmp_path / "wheel-venv"
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
                       cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(venv / "bin" / "gorgon"), "--version"], cwd=tmp_path, env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Python: CPython %d.%d." % sys.version_info[:2] in r.stdout, r.stdout
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import gorgon._gorgon"], cwd=tmp_path,
                       env=clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
