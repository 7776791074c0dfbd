"""Entry point for ``python -m modelserver``."""

from modelserver.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
