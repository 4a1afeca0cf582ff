"""Holding off the cyclic garbage collector while a batch is processed (see :func:`paused_gc`)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _CollectorPause:
    """How many threads are inside :func:`paused_gc`, and whether the collector ran before the first."""

    lock = threading.Lock()
    holders = 0
    resume = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while one batch is processed.

    A batch of thousands of transactions makes hundreds of thousands of short-lived objects
    (transactions, records, reason dicts) that reference counting frees; the collector would otherwise
    walk them, and everything else the process holds, hundreds of times a batch: a tenth or more of a
    worker's CPU. Cycles made meanwhile are collected once it runs again. Threads may overlap: the
    collector resumes when the last one leaves, and only if it was running when the first came in.
    """
    pause = _CollectorPause
    with pause.lock:
        if pause.holders == 0:
            pause.resume = gc.isenabled()
            gc.disable()
        pause.holders += 1
    try:
        yield
    finally:
        with pause.lock:
            pause.holders -= 1
            if pause.holders == 0 and pause.resume:
                gc.enable()


def freeze_startup_objects() -> None:
    """Move everything alive now (models, compiled kernels, imported libraries) out of the collector's
    sight. Call once after start-up: full collections then walk only what serving made since, so
    they stop being the slowest moments of a long-running service's tail latency."""
    gc.collect()
    gc.freeze()
