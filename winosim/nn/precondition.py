"""Per-position preconditioning of Winograd-domain weights: one learning rate for 16 unequal positions.

Why (issue 10: Winograd-ReLU trains slower per epoch than spatial). In a Winograd-ReLU VGG-nagadomi trained
for 16 epochs, the RMS of the multiplied activations ReLU(B^T d B) differs up to 5x between the 16 positions
(the rows of B^T that add neighbouring pixels see them reinforce, the rows that subtract see them cancel) and
the RMS of dL/dQ up to 15x. Plain SGD therefore moves some positions of Q an order of magnitude slower than
others; a spatial kernel's nine taps see activations of one scale and have no such problem.

What. `calibrate_position_scales(model, images)` measures, in every Winograd layer, the RMS r_p of the
multiplied activations at each position p on one batch, and installs s_p = geomean(r) / r_p (rounded to a
power of two) as the layer's `position_scale` while dividing the stored weight by s_p. The layer multiplies
with Q = weight * s, so the function is unchanged, bit for bit; SGD on the stored weight is SGD on Q with a
per-position step s_p^2 = the step of training on activations normalised per position, with the
normalisation folded into Q. Pruning (by |Q|), the extracted weights and the activations are the paper's:
only the optimiser's geometry changes.
Weight decay acts on the stored weight, i.e. on Q / s.

When. The imbalance is a property of trained features (smooth feature maps): at initialisation only the first
Winograd layers, which see the image's own correlations, show it. `winosim train --precondition position_rms`
therefore recalibrates at the start of every epoch, on the first 256 training images (unaugmented); the
momentum moves with the weights, and since the scales are powers of two the model's function is unchanged bit
for bit by every recalibration.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from winosim.nn.layers import POSITIONS, WinogradConv2d
from winosim.nn.models import WinoNet

PRECONDITIONINGS: tuple[str, ...] = ("none", "position_rms")
"""`TrainConfig.precondition`: none (the paper's plain SGD on Q) or position_rms (this module)."""

CALIBRATION_IMAGES = 256
"""How many training images (the first ones, unaugmented) the calibration measures."""


def position_rms(activation: Tensor) -> Tensor:
    """RMS over everything but the position axis of a Winograd-domain activation (16, C, N, TH, TW) -> (16,),
    in float64."""
    return activation.detach().double().reshape(POSITIONS, -1).pow(2).mean(dim=1).sqrt()


def scales_from_rms(rms: Tensor) -> Tensor:
    """s_p = geomean(r) / r_p, rounded to the nearest power of two (so that dividing the weight by s and
    multiplying it back is exact: calibration keeps the function bit for bit), over the positions that carry
    signal; a position that never does (r_p at most 1e-6 of the largest) keeps s_p = 1: its weights receive no
    gradient either way."""
    scale = torch.ones_like(rms)
    if float(rms.max()) <= 0:
        return scale
    live = rms > 1e-6 * float(rms.max())
    geomean = torch.exp(torch.log(rms[live]).mean())
    scale[live] = torch.exp2(torch.round(torch.log2(geomean / rms[live])))
    return scale


@torch.no_grad()
def calibrate_position_scales(
    model: WinoNet, images: Tensor, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Tensor]:
    """Measure every Winograd layer's per-position activation RMS on `images` (batch statistics, as training
    sees them; the batch norms' running statistics are restored) and rescale it as the module docstring says;
    the optimiser's per-weight state (momentum) moves to the new coordinates with the weight, so the step in Q
    is unchanged. Returns the new scales by layer name. Spatial layers are left alone."""
    layers = [(geom.name, layer) for geom, layer in model.winograd_modules() if layer.mode != "spatial"]
    measured: dict[str, Tensor] = {}

    def hook(name: str, layer: WinogradConv2d) -> Callable[[torch.nn.Module, tuple[Tensor, ...], Tensor], None]:
        def record(_module: torch.nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            measured[name] = position_rms(layer.winograd_activation(inputs[0]))

        return record

    buffers = {name: value.clone() for name, value in model.named_buffers() if value is not None}
    was_training = model.training
    handles = [layer.register_forward_hook(hook(name, layer)) for name, layer in layers]
    try:
        model.train()
        model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        for name, value in model.named_buffers():
            if name in buffers:
                value.copy_(buffers[name])
    scales: dict[str, Tensor] = {}
    for name, layer in layers:
        old = layer.position_scale if layer.position_scale is not None else torch.ones(POSITIONS)
        # the activations the layer multiplies are unscaled: the scale lives in Q, so r is measured afresh
        new = scales_from_rms(measured[name]).float()
        ratio = (old.to(layer.weight.device) / new.to(layer.weight.device)).view(POSITIONS, 1, 1)
        layer.weight.mul_(ratio)
        if optimizer is not None:
            for value in optimizer.state.get(layer.weight, {}).values():
                if isinstance(value, Tensor) and value.shape == layer.weight.shape:
                    value.mul_(ratio)
        layer.set_position_scale(new)
        scales[name] = new
    return scales
