"""The suite tests the build it was given: with GORGON_BUILD_DIR (the
sanitizer tiers) the server and its workers load the extension from that
directory, not the in-place build of the checkout."""
import os

import pytest

from conftest import BUILD_DIR, REPO, fetch

APP = (
    "import sys\n"
    "import gorgon._gorgon\n"
    "def app(environ, start_response):\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
    "    return [gorgon._gorgon.__file__.encode()]\n")


@pytest.mark.tsan
@pytest.mark.parametrize("mode", ["interpreters", "threads"])
def test_workers_load_the_build_under_test(server, tmp_path, mode):
    (tmp_path / "gt_which_build.py").write_text(APP)
    srv = server("gt_which_build:app", "--mode", mode,
                 env={"GORGON_PYTHONPATH": str(tmp_path)})
    loaded = os.path.realpath(fetch(srv, "/").body.decode())
    expected = os.path.realpath(os.path.join(BUILD_DIR or REPO, "gorgon"))
    assert os.path.dirname(loaded) == expected, (loaded, expected)
