"""glibc malloc settings for frame-by-frame inference on CPU: keep freed large tensors for reuse.

By default glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it to the kernel when freed, so each large tensor of each frame is page-faulted
in again, a cost proportional to its size (a 128-channel map on the 1/4 grid of a 1024×2048 frame is
67 MB). Raising the mmap and trim thresholds keeps those pages in the heap, where the next frame's
tensors of the same sizes reuse them. The resident memory then stays at
its high-water mark instead of falling between frames. The environment variables
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do the same from outside; when either is set,
it wins and nothing is changed here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def retain_freed_memory(threshold_bytes: int = 1 << 30) -> str:
    """Let glibc keep freed blocks up to ``threshold_bytes`` for reuse (``mallopt`` of the mmap and trim
    thresholds, for the whole process). Returns the policy in effect, for run reports: nothing is
    changed on other C libraries or when the user set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``."""
    user = [f"{v}={os.environ[v]}" for v in _ENV if os.environ.get(v)]
    if user:
        return "environment: " + ", ".join(user)
    libc = _glibc()
    if libc is None:
        return "C library default (not glibc)"
    value = ctypes.c_int(min(int(threshold_bytes), 2**31 - 1))  # mallopt takes a C int
    if libc.mallopt(_M_MMAP_THRESHOLD, value) and libc.mallopt(_M_TRIM_THRESHOLD, value):
        return f"glibc: freed blocks up to {value.value} bytes kept for reuse (mallopt)"
    return "glibc default (mallopt refused)"
