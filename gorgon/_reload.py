"""Reload in --mode threads: the new worker threads share the main
interpreter with the old ones, so a fresh import of the application needs
its modules out of sys.modules first.

Dropped: every module loaded from a file outside the Python installation and
the virtual environment (the application's own code), except gorgon itself.
Kept: the standard library and installed packages, as they were.
"""
import os
import site
import sys


def _installed_roots():
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    try:
        roots.update(site.getsitepackages())
    except AttributeError:
        pass
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user:
        roots.add(user)
    roots.add(os.path.dirname(os.path.abspath(__file__)))  # gorgon itself
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def forget_app_modules():
    """Removes the application's own modules from sys.modules; returns how many."""
    roots = _installed_roots()
    dropped = 0
    for name, module in list(sys.modules.items()):
        if name == "__main__" or name == "gorgon" or name.startswith("gorgon."):
            continue
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        if os.path.realpath(path).startswith(roots):
            continue
        del sys.modules[name]
        dropped += 1
    return dropped
