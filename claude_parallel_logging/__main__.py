"""``python -m claude_parallel_logging``: the same command-line tool as ``cpl``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
