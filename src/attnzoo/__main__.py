"""``python -m attnzoo``: the command-line interface."""

from attnzoo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
