"""Per-position statistics of a trained Winograd model's layers: how unequal the 16 Winograd positions are.

For every Winograd layer of the checkpoint's model, on the first `--images` training images (unaugmented,
training-mode batch statistics, one forward and backward pass with the model's own loss): the RMS of the
multiplied activations at each position, the RMS of dL/dQ, the RMS of Q, each divided by its largest
position, and the spread (largest / smallest). The evidence behind `winosim.nn.precondition`.

    python traces/recipes/probe_positions.py runs/<run>/phase0_dense.pt [--data ../shared/data/cifar10]
"""

from __future__ import annotations

import argparse
import sys

import torch

from winosim.errors import WinosimError
from winosim.nn.data import load_dataset
from winosim.nn.layers import POSITIONS
from winosim.nn.precondition import position_rms
from winosim.nn.train import load_checkpoint, model_from_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a native or winograd_relu checkpoint (phase0_dense.pt, last.pt)")
    parser.add_argument("--data", default="../shared/data/cifar10", help="dataset folder (training split)")
    parser.add_argument("--images", type=int, default=128, help="training images to measure on (default 128)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.images < 1:
        print(f"probe_positions: --images must be >= 1, got {args.images}", file=sys.stderr)
        return 1
    try:
        model = model_from_checkpoint(load_checkpoint(args.checkpoint)).train()
        data = load_dataset(args.data, "train")
        x, y = data.take(range(min(args.images, len(data))))
    except WinosimError as exc:
        print(f"probe_positions: {exc}", file=sys.stderr)
        return 1
    layers = [(geom.name, layer) for geom, layer in model.winograd_modules() if layer.mode != "spatial"]
    if not layers:
        print(f"probe_positions: {args.checkpoint} has no Winograd-domain layers", file=sys.stderr)
        return 1
    seen: dict[str, torch.Tensor] = {}
    for name, layer in layers:
        layer.register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, position_rms(m.winograd_activation(i[0])))
        )
    torch.nn.functional.cross_entropy(model(x), y).backward()
    print(f"# {args.checkpoint}: per-position RMS / largest position, {args.images} training images")
    print("| layer | quantity | spread | " + " | ".join(f"p{p}" for p in range(POSITIONS)) + " |")
    print("|---|---|---:|" + "---:|" * POSITIONS)
    for name, layer in layers:
        assert layer.weight.grad is not None
        scale = layer.position_scale if layer.position_scale is not None else torch.ones(POSITIONS)
        q_grad = layer.weight.grad / scale.view(POSITIONS, 1, 1)  # dL/dQ (Q = weight * scale)
        rows = {
            "activation RMS": seen[name],
            "dL/dQ RMS": position_rms(q_grad.unsqueeze(2)),
            "Q RMS": position_rms(layer.effective_weight().unsqueeze(2)),
        }
        for quantity, rms in rows.items():
            relative = rms / rms.max()
            spread = float(rms.max() / rms.min()) if float(rms.min()) > 0 else float("inf")
            print(f"| {name} | {quantity} | {spread:.1f}x | " + " | ".join(f"{v:.2f}" for v in relative) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
