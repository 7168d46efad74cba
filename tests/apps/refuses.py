"""The modes app behind an import of _testsinglephase, a single-phase-init
extension module that refuses own-GIL sub-interpreters (as pydantic_core,
orjson and other PyO3 modules do)."""
import _testsinglephase  # noqa: F401

from modes import app  # noqa: F401
