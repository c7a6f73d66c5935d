"""Benchmark: exact multiply counts of the five methods on the paper's ImageNet ResNet-18, 8 images.

Issue 2's performance target: counting every method on a synthetic trace of the paper's ImageNet ResNet-18
geometry (paper.md section 3) with 8 images takes a few seconds and at most 3x the *floor*, measured in
the same run on the same masks. The floor is one pass of mask matrix products: for every (variant, layer),
the non-zero counts of the weight mask and of the activation mask reduced onto the axes they share
(input channel x Winograd position, or input channel x kernel tap) and one matrix product of the two. Every
exact count has to read every mask bit at least once, so no counting method can beat this by much; the
exact spatial count needs one pass per kernel tap over the activations, which is where any excess goes.

Run as a script (not part of the test run): `python benchmarks/bench_counts.py [--images 8] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from winosim.counts import count_layer, count_trace  # noqa: E402
from winosim.geometry import resnet18_imagenet  # noqa: E402
from winosim.methods import METHODS, available  # noqa: E402
from winosim.synthetic import synthetic_trace  # noqa: E402
from winosim.trace import Trace, Variant  # noqa: E402


def floor_pass(trace: Trace) -> int:
    """One pass of mask matrix products over every mask of every variant (the lower bound to compare to)."""
    total = 0
    for variant in trace.variants:
        for layer, masks in zip(trace.layers, variant.masks, strict=True):
            weight, act = masks.weight, masks.activation
            if variant.domain(layer) == "winograd":
                weights_cp = np.count_nonzero(weight, axis=0)  # (C, P)
                acts_cp = np.count_nonzero(act, axis=(0, 2, 3))  # (C, P)
            else:
                weights_cp = np.count_nonzero(weight, axis=0).reshape(weight.shape[1], -1)  # (C, R*S)
                acts_cp = np.count_nonzero(act, axis=(0, 2, 3))[:, None]  # (C, 1)
            total += int(np.einsum("cp,cq->", weights_cp.astype(np.int64), acts_cp.astype(np.int64)))
    return total


def best_of(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def per_method_seconds(trace: Trace, repeats: int) -> dict[str, float]:
    """Where the counting time goes: all layers of one method at a time."""
    sources = available(trace)
    result = {}
    for method in METHODS:
        variants = [None if name is None else trace.variant(name) for name in sources[method]]

        def work(method: str = method, variants: list[Variant | None] = variants) -> None:
            for index in range(len(trace.layers)):
                for variant in variants:
                    count_layer(trace, index, method, variant)

        result[method] = best_of(repeats, work)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    trace = synthetic_trace(resnet18_imagenet(), images=args.images, seed=0)
    setup = time.perf_counter() - start
    mask_bytes = sum(m.weight.nbytes + m.activation.nbytes for v in trace.variants for m in v.masks)
    print(
        f"trace: synthetic resnet18_imagenet, {args.images} images, {len(trace.variants)} variants, "
        f"{mask_bytes / 2**20:.0f} MiB of bool masks (generated in {setup:.1f} s, not timed)"
    )

    counts = count_trace(trace)  # warm-up, and a consistency check of the two passes
    assert len(counts) == len(trace.layers) * len(METHODS)
    floor_pass(trace)

    floor = best_of(args.repeats, lambda: floor_pass(trace))
    counting = best_of(args.repeats, lambda: count_trace(trace))
    print(f"floor (one pass of mask matrix products): {floor:.3f} s")
    print(f"count_trace, five methods:                {counting:.3f} s")
    print(f"ratio count_trace / floor:                {counting / floor:.2f}x (target <= 3x, a few seconds)")
    print("per method (all layers, best of repeats):")
    for method, seconds in per_method_seconds(trace, args.repeats).items():
        print(f"  {method:<16} {seconds:.3f} s")


if __name__ == "__main__":
    main()
