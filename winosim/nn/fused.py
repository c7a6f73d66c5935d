"""Fused CPU kernels for the Winograd layer (`fused.cpp`), compiled on first use.

The eager transforms of `winosim.nn.layers` run as chains of whole-tensor additions with temporaries between
them: memory-bound passes that on an Intel CPU with AMX took most of a Winograd-ReLU layer's time
(docs/training.md, Performance). These kernels compute the input transform (with the Winograd-domain ReLU),
its adjoint (with the ReLU's mask), the output transform and its adjoint in one pass each, in float32 and in
the eager order of additions, rounding once to the tensor's dtype as they store (the layer's precision rule,
`winosim.nn.layers`), so their results are the eager ones bit for bit (tests/nn/test_fused.py) and a training
run gives the same model with or without them. The 16 products stay torch's `bmm`.

`winograd_forward` and `winograd_backward` run the whole layer (transform, products, output transform, and
their adjoints) a block of images at a time on each thread, so that V and M stay in cache (`layer_kernels()`;
`winosim.nn.layers` uses them for a training layer whose map is in the products' dtype). They compute what the
unblocked layer computes, to rounding: a block's products are a GEMM of fewer rows (torch may pick another
kernel for it) and dW sums one product per block, where the unblocked layer runs one `bmm` over all tiles.

They are built with torch's C++ extension loader (a C++ compiler and ninja; about 30 s once, then cached under
`~/.cache/torch_extensions`) the first time a layer needs one. Where they cannot be built, or where
`WINOSIM_FUSED=0` is set (to measure or check the eager path), `kernels()` is None and the layer runs its eager
transforms; `WINOSIM_FUSED=transforms` keeps the four transform kernels and leaves the layer unblocked (torch's
`bmm` over all tiles between them), to measure what the blocks buy. They apply to CPU tensors in float32 or
bfloat16 stored channels-last (maps) or tiles-first (Winograd-domain tensors), which is how the layer and the
recipes train; any other tensor takes the eager path.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused.cpp")
ENV = "WINOSIM_FUSED"


def _cpu_tag() -> str:
    """A short digest of this CPU's instruction-set flags: the kernels are compiled for the CPU they run on
    (-march=native), so a build cached for another CPU (a home folder that moved) is never loaded here."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        flags = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]


def _vector_flags() -> list[str]:
    """On x86-64, let the compiler use 512-bit vectors where the CPU has them (GCC otherwise prefers 256-bit
    ones on AVX-512 CPUs); measured faster on an Intel CPU with AMX (docs/training.md, Performance)."""
    return ["-mprefer-vector-width=512"] if platform.machine().lower() in ("x86_64", "amd64") else []


@functools.cache
def _build() -> Any | None:
    from torch.utils import cpp_extension

    try:
        return cpp_extension.load(
            name=f"winosim_fused_{_cpu_tag()}",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-march=native", *_vector_flags(), "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, a build error: the eager transforms serve
        logger.warning("fused transform kernels unavailable (%s); using the eager transforms", f"{exc}"[:200])
        return None


def kernels() -> Any | None:
    """The compiled module (`input_transform`, `input_transform_backward`, `output_transform`,
    `output_transform_backward`, `winograd_forward`, `winograd_backward`), or None where `WINOSIM_FUSED=0` or
    it cannot be built."""
    if os.environ.get(ENV, "1") == "0":
        return None
    return _build()


def layer_kernels() -> Any | None:
    """The compiled module where the whole layer may run blocked (`winograd_forward` / `winograd_backward`): as
    `kernels()`, and None where `WINOSIM_FUSED=transforms`."""
    return None if os.environ.get(ENV, "1") == "transforms" else kernels()


def usable(tensor: torch.Tensor) -> bool:
    """Whether the kernels take this tensor's device and dtype (its layout is checked by each caller)."""
    return tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.bfloat16)
