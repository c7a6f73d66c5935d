"""Seeded synthetic traces: random masks of any geometry with chosen densities. NOT trained models.

A synthetic trace exercises the simulator on any geometry before (or without) a trained model. It is
built so that load imbalance is not artificially flat: with `variation > 0` every Winograd position, input
channel and output channel gets its own density, log-normally spread around the target. Densities are
targets of a random draw, so measured densities differ slightly; the trace stores the measured ones.

Per variant method:
- `winograd_relu`: Winograd-domain activations drawn directly with the activation density (the ReLU after
  the input transform makes them sparse).
- `native`: a spatial ReLU mask is drawn with the activation density and pushed through the structure of
  B^T d B: a Winograd-domain value is non-zero where any input it sums is non-zero. This reproduces how the
  transform fills in the zeros of ReLU(d) (paper.md section 2).
- `spatial`: spatial activations drawn with the activation density.
The first layer's input is the image and is dense, and so are the spatial maps that the 1x1 / strided
convolutions of a `winograd_relu` variant read (its ReLUs live in the Winograd domain). Only layers of kind
"winograd" are pruned; the stem, 1x1 and FC layers keep dense weights, as in the paper. Every trace is
labelled synthetic in its metadata.

Size: the masks of a trace are held in memory as one byte per element while they are drawn, so a trace whose
masks would exceed `max_mask_bytes` (default `DEFAULT_MAX_MASK_BYTES`, 2 GiB: about 90 images of ImageNet
ResNet-18; `synth --max-mask-gib` raises it) is refused before anything is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.trace import VARIANT_METHODS, LayerMasks, Provenance, Trace, Variant, mask_shapes
from winosim.version import __version__
from winosim.winograd import tile, transform_for

DEFAULT_MAX_MASK_BYTES = 2 * 1024**3
"""Default bound on the bytes of a synthetic trace's masks in memory (one byte per mask element)."""


def mask_bytes(geometry: NetworkGeometry, images: int, methods: Sequence[str], winograd_m: int = 2) -> int:
    """Bytes the masks of a synthetic trace of `geometry` take in memory (one per element), computed from the
    shapes alone (Python integers: exact however large)."""
    return sum(
        math.prod(shape)
        for method in methods
        for layer in geometry.layers
        for shape in mask_shapes(method, layer, images, winograd_m)
    )


def _size_text(size_bytes: int) -> str:
    """'1.5 GiB', '12 KiB', '100 bytes'."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:,.3g} {unit}"
    return f"{size_bytes} bytes"


def _spread(rng: np.random.Generator, size: int, variation: float) -> NDArray[np.float64]:
    """Multiplicative factors with mean ~1 and log-normal spread `variation` (0 -> all ones)."""
    if variation == 0.0:
        return np.ones(size)
    factors = rng.lognormal(mean=0.0, sigma=variation, size=size)
    return factors / factors.mean()


def _draw(rng: np.random.Generator, shape: tuple[int, ...], density: NDArray[np.float64]) -> NDArray[np.bool_]:
    return rng.random(shape, dtype=np.float32) < np.clip(density, 0.0, 1.0).astype(np.float32)


def _structural_winograd(spatial_nchw: NDArray[np.bool_], winograd_m: int) -> NDArray[np.bool_]:
    """Non-zero structure of B^T d B given the non-zero structure of d: (N,C,H,W) -> (N,C,TH,TW,P)."""
    transform = transform_for(winograd_m, 3)
    support = (transform.BT != 0).astype(np.float32)
    tiles = tile(spatial_nchw.astype(np.float32), transform)  # (N, C, TH, TW, p, p)
    reached = support @ tiles @ support.T  # counts of non-zero inputs feeding each position
    p = transform.p
    return (reached > 0).reshape(*tiles.shape[:-2], p * p)


def _layer_masks(
    rng: np.random.Generator,
    layer: LayerGeometry,
    method: str,
    images: int,
    winograd_m: int,
    weight_density: float,
    activation_density: float,
    variation: float,
    first: bool,
) -> LayerMasks:
    weight_shape, act_shape = mask_shapes(method, layer, images, winograd_m)
    pruned = layer.kind == "winograd"
    winograd_domain = len(weight_shape) == 3
    positions = weight_shape[-1] if winograd_domain else weight_shape[-1] * weight_shape[-2]
    k, c = layer.out_channels, layer.in_channels

    if pruned:
        per_pos = _spread(rng, positions, variation)
        per_in = _spread(rng, c, variation)
        per_out = _spread(rng, k, variation)
        density = weight_density * per_out[:, None, None] * per_in[None, :, None] * per_pos[None, None, :]
        weight = _draw(rng, (k, c, positions), density).reshape(weight_shape)
    else:
        weight = np.ones(weight_shape, dtype=np.bool_)

    # The image is dense; in a Winograd-ReLU network the ReLU moved into the next Winograd layer, so the
    # spatial maps that 1x1 / strided convolutions read are dense too (FC inputs keep a spatial ReLU).
    if first or (method == "winograd_relu" and not winograd_domain and layer.op == "conv"):
        return LayerMasks(weight=weight, activation=np.ones(act_shape, dtype=np.bool_))
    per_channel = _spread(rng, c, variation)
    if winograd_domain and method == "winograd_relu":
        per_pos = _spread(rng, positions, variation)
        density = activation_density * per_channel[None, :, None, None, None] * per_pos
        activation = _draw(rng, act_shape, density)
    else:
        spatial_shape = (images, c, layer.in_height, layer.in_width)
        spatial = _draw(rng, spatial_shape, activation_density * per_channel[None, :, None, None])
        activation = _structural_winograd(spatial, winograd_m) if winograd_domain else spatial
    return LayerMasks(weight=weight, activation=activation)


def synthetic_trace(
    geometry: NetworkGeometry,
    *,
    images: int = 8,
    weight_density: float = 0.3,
    activation_density: float = 0.5,
    methods: Sequence[str] = VARIANT_METHODS,
    variation: float = 0.5,
    seed: int = 0,
    command: str | None = None,
    max_mask_bytes: int = DEFAULT_MAX_MASK_BYTES,
) -> Trace:
    """A seeded random trace of `geometry` with one variant per method (named after the method).

    Same arguments, same masks, bit for bit. `variation` is the log-normal sigma of the per-position,
    per-input-channel and per-output-channel density factors (0 = uniform). A trace whose masks would take
    more than `max_mask_bytes` (see `mask_bytes`) is refused before anything is allocated.
    """
    for name, value in (("weight_density", weight_density), ("activation_density", activation_density)):
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise ConfigError(f"synthetic_trace: {name} must be in [0, 1], got {value}")
    if not (isinstance(variation, int | float) and math.isfinite(variation) and variation >= 0.0):
        raise ConfigError(f"synthetic_trace: variation must be a finite number >= 0, got {variation}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"synthetic_trace: seed must be an integer in [0, 2^63 - 1], got {seed!r}")
    if not isinstance(images, int) or images < 1:
        raise ConfigError(f"synthetic_trace: images must be >= 1, got {images}")
    unknown = [m for m in methods if m not in VARIANT_METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"synthetic_trace: methods must be a non-empty subset of {VARIANT_METHODS}, got {list(methods)}"
        )
    if len(set(methods)) != len(methods):
        raise ConfigError(f"synthetic_trace: methods must not repeat, got {list(methods)}")

    winograd_m = 2
    needed = mask_bytes(geometry, images, methods, winograd_m)
    if needed > max_mask_bytes:
        raise ConfigError(
            f"synthetic_trace: the masks of {len(methods)} variants of {geometry.name} with {images} images would "
            f"take {_size_text(needed)} of memory, above the limit of {_size_text(max_mask_bytes)} "
            "(fewer --images, or raise the limit with --max-mask-gib)"
        )
    variants = []
    for vi, method in enumerate(methods):
        masks = tuple(
            _layer_masks(
                np.random.default_rng([seed, vi, li]),
                layer,
                method,
                images,
                winograd_m,
                weight_density,
                activation_density,
                variation,
                first=li == 0,
            )
            for li, layer in enumerate(geometry.layers)
        )
        variants.append(
            Variant(
                name=method,
                method=method,  # type: ignore[arg-type]
                masks=masks,
                target_density=weight_density,
                recipe={
                    "synthetic": True,
                    "weight_density": weight_density,
                    "activation_density": activation_density,
                    "variation": variation,
                    "seed": seed,
                },
            )
        )
    provenance = Provenance(
        dataset="none (synthetic)",
        images=images,
        seed=seed,
        winosim_version=__version__,
        command=command
        if command is not None
        else (
            f"synthetic_trace({geometry.name!r}, images={images}, weight_density={weight_density}, "
            f"activation_density={activation_density}, methods={list(methods)}, variation={variation}, seed={seed})"
        ),
        synthetic=True,
        notes=(
            "SYNTHETIC: random masks with target weight density "
            f"{weight_density} and activation density {activation_density}, variation {variation}; "
            "not a trained model"
        ),
    )
    return Trace.of_network(geometry, variants, provenance, winograd_m)
