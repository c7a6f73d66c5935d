"""A process setting for long CPU training runs: keep freed memory in the process instead of returning it.

torch's CPU allocator takes every tensor from malloc, and glibc serves each request above its mmap threshold
(32 MiB at most) with fresh pages from the kernel and gives them back on free. A training step allocates
and frees the same large tensors every step (the Winograd layers' V and M are 4x their feature maps: 64-134
MiB each for VGG-nagadomi's first layers at batch 128), so every step page-faults through all of them again,
the kernel zeroing each page. `retain_freed_memory` turns that off for the process: every allocation from
the heap, freed memory kept for the next step. Measured (`benchmarks/bench_nn.py --malloc`, docs/training.md,
Performance; two threads, paired runs): Winograd-ReLU training steps 3-20% faster, native 8-23%, spatial 1-2%
(noise); the cost is that the process keeps its peak memory until it exits, which a training run reaches in
its first step anyway.

It changes the whole process's allocator, so only command entry points call it (`winosim train`, the
training benchmark), never library code.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>: keep up to this many free bytes at the heap's top
_M_MMAP_MAX = -4  # glibc <malloc.h>: at most this many mmap'd chunks at once (0: never mmap)
_INT_MAX = 2**31 - 1


def retain_freed_memory() -> bool:
    """Make glibc serve every allocation of this process from its heap and never trim freed memory back to the
    kernel (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = INT_MAX). True when applied; False, changing nothing,
    where the C library is not glibc (macOS, musl, Windows) or refuses."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
