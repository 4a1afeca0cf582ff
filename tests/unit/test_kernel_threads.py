"""A worker runs its compiled kernels on the threads it is given, never more than numba has."""

from __future__ import annotations

import numba

from fraudstream._kernels import limit_kernel_threads


def test_a_worker_limits_its_kernel_threads_within_what_numba_started() -> None:
    before = numba.get_num_threads()
    try:
        assert limit_kernel_threads(1) == 1
        assert numba.get_num_threads() == 1
        most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        assert limit_kernel_threads(most + 5) == most
        assert numba.get_num_threads() == most
    finally:
        numba.set_num_threads(before)
