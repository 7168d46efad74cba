"""Can gorgon run here? One line saying why not, instead of a traceback.

This module is imported before anything that needs CPython 3.13, so it is
kept to syntax that old Pythons (2.7 included) can still parse: no f-strings,
no annotations, no walrus.
"""

import os
import sys

MIN_PYTHON = (3, 13)

# What the server is built on, for the message on another platform.
LINUX_ONLY = "epoll, sendfile, PR_SET_PDEATHSIG"


def _python():
    """'3.11.7 (/path/to/python)': this interpreter, as the messages name it."""
    return "%s (%s)" % (sys.version.split()[0], sys.executable or "unknown executable")


def platform_problem():
    """A one-line reason gorgon cannot run on this OS, or None."""
    if not sys.platform.startswith("linux"):
        return ("gorgon runs on Linux only (it is built on %s); this is %s"
                % (LINUX_ONLY, sys.platform))
    return None


def python_problem():
    """A one-line reason this Python cannot run gorgon, or None."""
    impl = getattr(sys, "implementation", None)
    name = impl.name if impl is not None else "cpython"
    if name != "cpython":
        return "gorgon needs CPython %d.%d or newer; this is %s %s" % (
            MIN_PYTHON + (name, _python()))
    if tuple(sys.version_info[:2]) < MIN_PYTHON:
        return "gorgon needs CPython %d.%d or newer; this is %s" % (MIN_PYTHON + (_python(),))
    return None


def _built_extensions(pkg_dir):
    try:
        names = os.listdir(pkg_dir)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith("_gorgon.") and n.endswith(".so"))


def extension_problem():
    """A one-line reason gorgon's C extension cannot load in this Python, or None.

    Only looks at files: the extension is loaded later, by whoever needs it.
    """
    from importlib.machinery import EXTENSION_SUFFIXES

    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    built = _built_extensions(pkg_dir)
    if any(n == "_gorgon" + s for n in built for s in EXTENSION_SUFFIXES):
        return None
    rebuild = ("rebuild it with this Python: `make PYTHON=%s` in a checkout, or "
               "`pip install --force-reinstall` the checkout or wheel with it"
               % (sys.executable,))
    if not built:
        return ("gorgon's C extension is not built in %s; %s" % (pkg_dir, rebuild))
    return ("gorgon's C extension was built for another Python (%s), not for this %s; %s"
            % (", ".join(built), _python(), rebuild))


def problem():
    """The first reason gorgon cannot run here, or None."""
    return platform_problem() or python_problem() or extension_problem()


def require():
    """Print the reason gorgon cannot run here as one line and exit 1."""
    reason = problem()
    if reason:
        sys.stderr.write(reason + "\n")
        sys.exit(1)
