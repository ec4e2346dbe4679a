"""The allocator thresholds the server sets at start (core/malloc.py)."""

from __future__ import annotations

import platform

import pytest

from core.malloc import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_thresholds_are_accepted_by_glibc() -> None:
    assert tune_malloc() is True
