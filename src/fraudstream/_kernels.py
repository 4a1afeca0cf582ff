"""How many threads the compiled kernels of one worker process use (see :func:`limit_kernel_threads`)."""

from __future__ import annotations


def limit_kernel_threads(threads: int) -> int:
    """Run this thread's parallel kernels (a large batch's features and tree walks) on at most
    ``threads`` threads; returns the number set.

    Workers scale by processes, one or more per core, so a worker's kernels spreading over every core
    only makes them compete with the other workers and the servers, and each parallel section ends
    with its helper threads spinning while they wait for the next
    (docs/decisions/0020-worker-kernels-on-one-thread.md). numba's setting is per calling thread: call
    this on the thread that scores."""
    import numba

    threads = max(1, min(threads, int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    numba.set_num_threads(threads)
    return threads
