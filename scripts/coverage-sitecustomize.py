"""Copied into build/coverage/ by `make coverage`, which puts that directory
first on the servers' PYTHONPATH: every interpreter the server starts (the
main one, each sub-interpreter, each forked worker process) starts
coverage.py when COVERAGE_PROCESS_START names its configuration. Uses the
sys.monitoring core, which is per interpreter."""
import os

if os.environ.get("COVERAGE_PROCESS_START"):
    try:
        import coverage
    except ImportError:
        pass
    else:
        coverage.process_startup()
