"""The allocator thresholds the server sets at start (core/malloc.py)."""

from __future__ import annotations

import platform

import pytest

from core.malloc import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_thresholds_are_accepted_by_glibc() -> None:
    assert tune_malloc() is True


def test_trimming_the_heap_gives_free_pages_back() -> None:
    """After many small blocks are freed (a crowd of viewers leaving), ``trim_heap`` returns
    the free pages in the middle of the heap too: RSS falls."""
    import ctypes
    import ctypes.util

    from core.malloc import trim_heap

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    blocks = [libc.malloc(4096) for _ in range(20_000)]  # 80 MB in the main heap (< mmap size)
    for b in blocks:
        ctypes.memset(b, 1, 4096)
    keep = blocks[-1]  # the top of the heap stays in use: only a trim of the middle helps
    for b in blocks[:-1]:
        libc.free(b)
    before = rss_kb()
    assert trim_heap()
    after = rss_kb()
    libc.free(keep)
    assert before - after > 40_000, (before, after)
