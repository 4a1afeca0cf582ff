"""glibc keeps freed memory in a process started with the settings; settings already given stand."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fraudstream._malloc import MALLOC_ENV, freed_memory_kept

GLIBC = sys.platform == "linux" and bool(os.confstr("CS_GNU_LIBC_VERSION"))

PROBE = """
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(4 << 20)
heaps = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
print(any(int(lo, 16) <= block < int(hi, 16) for lo, hi in heaps))
"""


def takes_from_the_heap(env: dict[str, str]) -> bool:
    """Whether a fresh process started with ``env`` serves a 4 MB block from its heap, where a freed
    block stays for reuse, rather than mapping it on its own (and unmapping it when it is freed)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip() == "True"


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc settings only")
def test_a_process_started_with_the_settings_keeps_large_blocks_on_its_heap() -> None:
    plain = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    assert takes_from_the_heap(freed_memory_kept(plain))
    assert not takes_from_the_heap(plain)


def test_settings_already_in_the_environment_stand() -> None:
    env = freed_memory_kept({"MALLOC_TOP_PAD_": "0", "PATH": "/bin"})
    assert env["MALLOC_TOP_PAD_"] == "0" and env["PATH"] == "/bin"
    assert {k: env[k] for k in MALLOC_ENV if k != "MALLOC_TOP_PAD_"} == {
        k: v for k, v in MALLOC_ENV.items() if k != "MALLOC_TOP_PAD_"
    }
