"""Keeping freed memory in the process, for the long batch jobs that free and reallocate it all the time.

A replay allocates numpy arrays of a batch's size (hundreds of kilobytes to megabytes each) and frees
them, batch after batch. glibc gives such blocks back to the kernel when they are freed (anything it
mapped on its own, and the top of the heap past 128 kB), so the next batch faults the same amount back
in, page by page, zeroed. Keeping freed memory for reuse avoids that; the price is a resident size that
stays near its peak until the job ends. The figures: docs/decisions/0019-keep-freed-memory.md.

glibc reads these settings from the environment (:data:`MALLOC_ENV`) when a process starts, and a
running process cannot change them short of calling ``mallopt`` through ctypes. So the command line
starts ``fraudstream worker`` and ``fraudstream replay`` afresh with them
(:func:`restart_keeping_freed_memory`), and every process those start (the replay's writer) inherits
them. A setting already in the environment is left as it is.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # glibc's largest: blocks below 32 MB come from the heap
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),  # free memory at the heap's top is returned only past 1 GB
    "MALLOC_TOP_PAD_": str(256 << 20),  # and the heap grows in steps of 256 MB (address space, not memory)
}
"""glibc's environment variables for keeping freed memory, and their values."""


def freed_memory_kept(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with :data:`MALLOC_ENV` added; a variable ``environ`` sets already keeps its value."""
    return {**MALLOC_ENV, **environ}


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):  # not a glibc system
        return False


def restart_keeping_freed_memory() -> None:
    """Replace this process with itself started afresh with :data:`MALLOC_ENV` in its environment.

    Nothing happens where the environment has every variable already (as after the restart) or the C
    library is not glibc. The process keeps its id, arguments and the rest of its environment; anything
    it did before is lost, so call this before anything else.
    """
    if all(name in os.environ for name in MALLOC_ENV) or not _glibc():
        return
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], freed_memory_kept(os.environ))
    except OSError as error:  # carry on with glibc's defaults
        log.debug("could not restart with the malloc settings: %s", error)
