"""`python -m gorgon` and the `gorgon` command.

Checks first that gorgon can run here (Linux, CPython 3.13+, the extension
built for this Python) and says in one line why not; then the CLI.
"""

import sys

from gorgon import _check


def main(argv=None):
    _check.require()
    from gorgon._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
