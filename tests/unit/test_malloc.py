"""The allocator setting the replay relies on is accepted where it applies."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from fraudstream._malloc import keep_freed_memory


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)
def test_glibc_accepts_every_setting() -> None:
    assert ctypes.util.find_library("c")
    assert keep_freed_memory() is True
