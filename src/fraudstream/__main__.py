"""The ``fraudstream`` program, also run as ``python -m fraudstream``: the command line (:mod:`.cli`),
started afresh first by the commands that need a setting only a new process takes."""

from __future__ import annotations

import sys

from fraudstream._malloc import restart_keeping_freed_memory

KEEP_FREED_MEMORY = ("worker", "replay")
"""Commands that free and reallocate a batch's worth of memory all the time: they run with glibc told to
keep freed memory (see :mod:`fraudstream._malloc`), which it reads only when a process starts."""


def main() -> None:
    """Run the command line; a :data:`KEEP_FREED_MEMORY` command restarts with the malloc settings
    first, before the command line is even imported."""
    if sys.argv[1:2] and sys.argv[1] in KEEP_FREED_MEMORY:
        restart_keeping_freed_memory()
    from fraudstream.cli import app

    app()


if __name__ == "__main__":
    main()
