"""docs/settings.md and --help say what the command line does: every flag, its
GORGON_* variable (which really sets it) and its real default."""
import argparse
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_gorgon

sys.path.insert(0, str(REPO))
from gorgon import _cli  # noqa: E402


def options():
    return [a for a in _cli.build_parser()._actions if a.dest not in ("help", "version")]


def test_settings_page_is_up_to_date():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-settings"), "--check"],
                       capture_output=True, text=True, env={**os.environ, "GORGON_WORKERS": "7"})
    assert r.returncode == 0, r.stdout + r.stderr


def test_settings_page_names_every_flag_and_variable():
    text = (REPO / "docs" / "settings.md").read_text()
    for a in options():
        for flag in a.option_strings:
            assert "`%s" % flag in text, flag
        env = _cli.action_env(a)
        assert env and "`%s`" % env in text, (a.dest, env)
    for env, _ in _cli.ENV_ONLY:
        assert "`%s`" % env in text


def other_value(a):
    """A valid value for the action's variable that differs from its default."""
    if isinstance(a, argparse.BooleanOptionalAction) or a.nargs == 0:
        # On by default: its variable turns it off (unless it is a NO_ one).
        on = a.default is True and not _cli.action_env(a).startswith("GORGON_NO_")
        return "0" if on else "1"
    if a.choices:
        return next(c for c in a.choices if c != a.default)
    if a.type is int:
        return "7"
    if a.type is float:
        return "7.5"
    return {"bind": "127.0.0.1:9", "app": "other:app"}.get(a.dest, "/tmp")


@pytest.mark.parametrize("dest", [a.dest for a in options()])
def test_each_documented_variable_sets_its_option(monkeypatch, dest):
    for name in list(os.environ):
        if name.startswith("GORGON_"):
            monkeypatch.delenv(name)

    def resolved():
        args = _cli.build_parser().parse_args(["app:app"] if dest != "app" else [])
        return vars(args), _cli.make_config(args)

    before = resolved()
    (a,) = [a for a in options() if a.dest == dest]
    monkeypatch.setenv(_cli.action_env(a), other_value(a))
    assert resolved() != before, "%s=%s changes nothing" % (_cli.action_env(a), other_value(a))


def test_help_shows_real_defaults_and_variables():
    r = run_gorgon("--help")
    out = " ".join(r.stdout.decode().split())
    assert r.returncode == 0
    assert "default: None" not in out, out
    assert "(default: 127.0.0.1:8000; env GORGON_BIND)" in out, out
    assert "MODULE alone means MODULE:application" in out, out
    assert "(default: the number of CPU cores; env GORGON_WORKERS)" in out, out


def test_help_shows_a_default_taken_from_the_environment():
    r = run_gorgon("--help", env={"GORGON_KEEP_ALIVE": "3"})
    out = " ".join(r.stdout.decode().split())
    assert "(default: 3 (from GORGON_KEEP_ALIVE); env GORGON_KEEP_ALIVE)" in out, out


def test_app_without_attribute_means_application(server, tmp_path):
    (tmp_path / "plainapp.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'default attribute\\n']\n")
    from conftest import fetch
    srv = server("plainapp", "--chdir", str(tmp_path))
    assert fetch(srv, "/").body == b"default attribute\n"


def test_every_readme_claim_names_a_test_that_exists():
    """docs/testing.md maps every option, signal, mode, status and shared call the
    README promises to tests that exist (scripts/check-claims)."""
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "check-claims")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
