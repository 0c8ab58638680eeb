"""glibc malloc settings that stop every denoiser call from page-faulting its working memory back in.

PyTorch's CPU tensors come from ``malloc``. With glibc's defaults, the 1-20 MB activations of a
denoiser call are handed back to the kernel when freed (mapped chunks are unmapped, and the heap
top is trimmed past its threshold), so the next call touches fresh pages: the bundled model's
18-frame call took 80,000-96,000 minor page faults (over 300 MB of zeroed pages) and 1.4x the time
it takes when freed memory stays in the process (578 vs 802 ms, one thread; ~150 faults a call).
Two ``mallopt`` settings keep it: allocations up to 32 MB (glibc's largest mmap threshold) come
from the heap, and up to ``trim_mb`` of free heap stays mapped. The price is that much memory kept
after a run. Linux with glibc only; elsewhere, or with ``LLIA_MALLOC_TUNING=0``, nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc
_applied: bool | None = None


def keep_freed_memory(trim_mb: int = 256) -> bool:
    """Apply the settings once per process; True where they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if sys.platform != "linux" or os.environ.get("LLIA_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # glibc; musl has none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_mb) * 1024 * 1024))
    return _applied
