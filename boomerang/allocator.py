"""Keep the memory a process frees for its next tensors, rather than handing it back to the OS.

glibc serves every allocation above its mmap threshold (at most 32 MiB: a chunk of logits, a layer's
activations) with a fresh `mmap` and unmaps it at `free`, so the next step faults the same pages in again
and the kernel zeroes them, every step. Served from the heap, never trimmed, that memory is reused once the
heap has grown to what a step needs (a few steps). The price is a higher resident peak (freed chunks are
kept, not all of them reusable); `make benchmark` measures both side by side (`docs/benchmarks.md`).
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>
NEVER_TRIM = 2**31 - 1  # mallopt takes a C int


def retain_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory; a no-op elsewhere, or when `GLIBC_TUNABLES` is set (even
    empty, which keeps glibc's defaults): the user's settings stand. Returns whether the setting took."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or "GLIBC_TUNABLES" in os.environ:
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
