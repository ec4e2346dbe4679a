"""glibc allocator thresholds for a media server.

glibc raises its mmap threshold to the size of the largest block freed -- here a 1.4 MB 720p
picture -- after which frames, keyframes and DTLS handshakes land in the main heap, whose freed
space is not given back: RSS then follows the highest point ever reached rather than what is in
use (measured: 1-1.5 MB per viewer at 200 viewers, 0.3 MB with fixed thresholds). Fixed
thresholds keep large blocks in mmap and trim the heap. Called first thing by the server, the
fan-out workers and the benchmark servers; a no-op outside glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 256 * 1024


def tune_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds; whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl)
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok)


def trim_heap() -> bool:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``: whole free pages
    anywhere in the heap, not only at its top). After a crowd of viewers leaves, what they used
    is free but scattered; without this RSS stays at the crowd's high-water mark."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    return bool(malloc_trim(0))
