"""Pure-Python fallback for compiled modules that refuse sub-interpreters.

Some packages compile their own Python modules (falcon builds ``falcon/app.py``
with Cython into ``falcon/app.cpython-313-x86_64-linux-gnu.so``) and ship the
``.py`` beside the compiled file. Such a compiled module may refuse an own-GIL
sub-interpreter ("module falcon.app does not support loading in
subinterpreters") while its source runs anywhere. The finder installed here,
in a worker's sub-interpreter only, wraps the loader of every compiled module
that has its ``.py`` beside it: the compiled module is tried first; only that
exact refusal makes it load the source instead. Nothing changes for modules
that load, or that have no source beside them.

``gorgon --no-pure-fallback`` (GORGON_NO_PURE_FALLBACK=1) never installs it.
"""

import importlib.machinery as _machinery
import importlib.util as _util
import os
import sys

REFUSAL = "does not support loading in subinterpreters"

_loaded = []


def loaded():
    """Names of the modules loaded from their source instead, in order."""
    return list(_loaded)


class _FallbackLoader:
    """The extension's own loader, with the module's source as a second choice."""

    def __init__(self, ext_loader, source):
        self.ext = ext_loader
        self.source = source
        self.fallback = False

    def create_module(self, spec):
        try:
            return self.ext.create_module(spec)
        except ImportError as e:
            if REFUSAL not in str(e):
                raise
        self.fallback = True
        spec.origin = self.source
        spec.cached = _util.cache_from_source(self.source)
        _loaded.append(spec.name)
        return None  # an ordinary module object, filled from the source below

    def exec_module(self, module):
        if not self.fallback:
            return self.ext.exec_module(module)
        src = _machinery.SourceFileLoader(module.__name__, self.source)
        module.__loader__ = src
        if module.__spec__ is not None:
            module.__spec__.loader = src
        module.__file__ = self.source
        src.exec_module(module)


class PureFallbackFinder:
    """Placed just before PathFinder, so it answers exactly what PathFinder would."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        spec = _machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not isinstance(spec.loader, _machinery.ExtensionFileLoader):
            return spec
        source = os.path.join(os.path.dirname(spec.origin), name.rpartition(".")[2] + ".py")
        if os.path.isfile(source):
            spec.loader = _FallbackLoader(spec.loader, source)
        return spec

    @classmethod
    def invalidate_caches(cls):
        pass


def install():
    if any(f is PureFallbackFinder for f in sys.meta_path):
        return
    for i, f in enumerate(sys.meta_path):
        if f is _machinery.PathFinder:
            sys.meta_path.insert(i, PureFallbackFinder)
            return
    sys.meta_path.append(PureFallbackFinder)
