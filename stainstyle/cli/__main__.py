"""``python -m stainstyle.cli``: the ``stainstyle`` command, as ``python -m stainstyle`` runs it."""

import sys

from stainstyle.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
