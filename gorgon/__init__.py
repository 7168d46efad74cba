"""gorgon: a Python application server whose workers are own-GIL sub-interpreters.

Run it as ``gorgon module:app`` or ``python -m gorgon module:app``.

Inside an application (any worker, or the main interpreter):

    import gorgon
    gorgon.shared.incr("hits")          # one store for the whole process
    ch = gorgon.channel("jobs")         # the same channel in every worker
    gorgon.worker_id, gorgon.worker_count, gorgon.mode

These names come from the C extension ``gorgon._gorgon``, loaded on first
use, so ``import gorgon`` works even where the extension is not built.

This file and ``__main__.py`` stay parseable by old Pythons, so that
``python -m gorgon`` under one says in one line what is wrong (``_check``).
"""

from gorgon import _check

_reason = _check.platform_problem()
if _reason:
    raise ImportError(_reason)

__version__ = "0.1.0"
__all__ = ["__version__", "shared", "channel", "Empty", "Full", "Closed", "Unavailable", "RequestTimeout",
           "worker_id", "worker_count", "mode"]

# Fixed for the interpreter's life: cached in this module after first use.
_STABLE = frozenset({"shared", "channel", "Empty", "Full", "Closed", "Unavailable", "RequestTimeout"})
# Set by the server when a worker starts (and by serve() in the main
# interpreter): read from the extension every time.
_FACTS = frozenset({"worker_id", "worker_count", "mode"})


def __getattr__(name):
    if name in _STABLE or name in _FACTS:
        try:
            from gorgon import _gorgon
        except ImportError:
            reason = _check.problem()
            if reason:
                raise ImportError(reason)
            raise

        value = getattr(_gorgon, name)
        if name in _STABLE:
            globals()[name] = value
        return value
    raise AttributeError("module 'gorgon' has no attribute %r" % (name,))


def __dir__():
    return sorted(set(globals()) | _STABLE | _FACTS)
