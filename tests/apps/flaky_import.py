"""Imports fine until the file named by GORGON_TEST_FAIL_MARKER exists; from
then on every import fails (an app broken on disk while the server runs)."""
import os

if os.path.exists(os.environ.get("GORGON_TEST_FAIL_MARKER", "/nonexistent")):
    raise RuntimeError("flaky_import told to fail by its marker file")

from modes import app  # noqa: E402,F401
