"""Keeping freed memory in the process, for the long batch jobs that free and reallocate it all the time.

A replay allocates numpy arrays of a batch's size (hundreds of kilobytes to megabytes each) and frees
them, batch after batch. glibc gives such blocks back to the kernel when they are freed (anything it
mapped on its own, and the top of the heap past 128 kB), so the next batch faults the same amount back
in, page by page, zeroed. In a Handbook replay that was 14–15 s of system CPU. Keeping freed memory for
reuse cut it to 10–11 s and lifted the replay from 18,449–21,510 to 21,882–21,941 transactions/s
(`make bench-replay`, runs alternating in the same hour). A worker's large batches are alike, though
there the gain is within the noise: in the Redis pipeline benchmark the workers used 154–173 µs of CPU
per transaction (four runs) against 172–175 without (two). The price is a resident size that stays near
its peak until the job ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_SETTINGS = (
    (_M_MMAP_THRESHOLD, 32 << 20),  # glibc's largest: blocks below 32 MB come from the heap
    (_M_TRIM_THRESHOLD, 1 << 30),  # free memory at the heap's top is returned only past 1 GB
    (_M_TOP_PAD, 256 << 20),  # and the heap grows in steps of 256 MB (address space, not memory)
)


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse; ``False`` where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    done = all(mallopt(option, value) == 1 for option, value in _SETTINGS)
    if not done:
        log.debug("mallopt refused a setting; the allocator keeps its defaults for it")
    return done
