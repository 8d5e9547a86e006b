"""``python -m stainstyle``: the ``stainstyle`` command (:func:`stainstyle.cli.main`)."""

import sys

if __name__ == "__main__":
    try:
        from stainstyle.cli import main
    except KeyboardInterrupt:  # Ctrl-C while the libraries load
        sys.stderr.write("stainstyle: interrupted\n")
        sys.exit(128 + 2)  # 128 + SIGINT, as stainstyle.cli.EXIT_INTERRUPTED
    sys.exit(main())
