"""The wrong Python, the wrong build, the wrong OS: one line, exit 1, no traceback."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.nosan  # other interpreters and copies of the package: nothing to sanitize


def pyenv_root():
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def old_pythons():
    """pyenv's CPythons older than 3.13: the newest of them and the oldest."""
    found = []
    versions = pyenv_root() / "versions"
    if versions.is_dir():
        for d in versions.iterdir():
            m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", d.name)
            exe = d / "bin" / "python"
            if m and tuple(map(int, m.groups()[:2])) < (3, 13) and os.access(exe, os.X_OK):
                found.append((tuple(map(int, m.groups())), exe))
    found.sort()
    return [exe for _, exe in ([found[-1], found[0]] if len(found) > 1 else found)]


def run(python, *args, pythonpath=REPO, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GORGON_"))}
    env["PYTHONPATH"] = str(pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([str(python), *args], env=env, cwd=cwd or REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def assert_one_line_exit_1(r):
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == "", r.stdout
    return lines[0]


OLD = old_pythons()


@pytest.mark.skipif(not OLD, reason="no CPython older than 3.13 in the pyenv root (%s)" % pyenv_root())
@pytest.mark.parametrize("python", OLD, ids=[p.parent.parent.name for p in OLD])
def test_python_older_than_313_says_so_in_one_line(python):
    version = python.parent.parent.name
    r = run(python, "-m", "gorgon", "hello:app", "--workers", "1")
    line = assert_one_line_exit_1(r)
    assert line.startswith("gorgon needs CPython 3.13 or newer; this is %s (" % version), line
    assert str(python.parent) in line, line


# Module __getattr__ (what loads the extension on first use) is 3.7+.
OLD_3 = [p for p in OLD if tuple(map(int, p.parent.parent.name.split(".")[:2])) >= (3, 7)]


@pytest.mark.skipif(not OLD_3, reason="no CPython 3.7 to 3.12 in the pyenv root (%s)" % pyenv_root())
@pytest.mark.parametrize("python", OLD_3, ids=[p.parent.parent.name for p in OLD_3])
def test_python_older_than_313_importing_the_extension_names_the_floor(python):
    r = run(python, "-c", "import gorgon; gorgon.shared")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith(
        "ImportError: gorgon needs CPython 3.13 or newer; this is %s (" % python.parent.parent.name), r.stderr


def test_older_python_headers_stop_the_build_in_one_line(tmp_path):
    """The C floor: compiled against Python.h older than 3.13, the build
    stops with the reason (a stand-in Python.h with 3.12's version number)."""
    (tmp_path / "Python.h").write_text("#define PY_VERSION_HEX 0x030C01F0\n")
    cc = shutil.which("gcc") or shutil.which("cc") or pytest.skip("no C compiler on PATH")
    r = subprocess.run([cc, "-fsyntax-only", "-I%s" % tmp_path, "-x", "c", str(REPO / "src" / "module.h")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "gorgon needs CPython 3.13 or newer (Python.h is older)" in r.stderr, r.stderr


def package_copy(tmp_path, so_name=None):
    """A copy of the package whose extension file is named so_name (None: no extension)."""
    pkg = tmp_path / "gorgon"
    pkg.mkdir()
    for f in (REPO / "gorgon").glob("*.py"):
        shutil.copy(f, pkg / f.name)
    if so_name:
        (pkg / so_name).write_bytes(b"not a real extension")
    return tmp_path


def test_extension_built_for_another_python(tmp_path):
    other = "_gorgon.cpython-399-x86_64-linux-gnu.so"
    r = run(sys.executable, "-m", "gorgon", "hello:app", pythonpath=package_copy(tmp_path, other),
            cwd=tmp_path)
    line = assert_one_line_exit_1(r)
    assert "built for another Python (%s)" % other in line, line
    assert sys.version.split()[0] in line and sys.executable in line, line
    assert "make PYTHON=%s" % sys.executable in line, line


def test_extension_not_built(tmp_path):
    r = run(sys.executable, "-m", "gorgon", "--version", pythonpath=package_copy(tmp_path),
            cwd=tmp_path)
    line = assert_one_line_exit_1(r)
    assert "extension is not built" in line and "make PYTHON=" in line, line


def test_using_gorgon_shared_without_the_extension_names_the_problem(tmp_path):
    r = run(sys.executable, "-c", "import gorgon; gorgon.shared", pythonpath=package_copy(tmp_path),
            cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith("ImportError: gorgon's C extension is not built"), r.stderr


def test_other_os_is_a_clear_error_at_import():
    r = run(sys.executable, "-c", "import sys; sys.platform = 'darwin'; import gorgon")
    assert r.returncode == 1
    last = r.stderr.splitlines()[-1]
    assert last == ("ImportError: gorgon runs on Linux only (it is built on epoll, sendfile, "
                    "PR_SET_PDEATHSIG); this is darwin"), r.stderr
