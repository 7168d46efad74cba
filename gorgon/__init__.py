"""gorgon: a Python application server whose workers are own-GIL sub-interpreters.

Run it as ``gorgon module:app`` or ``python -m gorgon module:app``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
