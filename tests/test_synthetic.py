"""Synthetic traces: seeded random masks of any geometry, with chosen densities, loudly labelled synthetic.

They stand in for trained models until those exist, so they must be reproducible (same seed, same bytes),
hit their target densities, and not be artificially uniform (the variation knob spreads densities across
Winograd positions and channels, so load imbalance shows up in the simulator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry, NetworkGeometry, convpool_cnn_c, vgg_nagadomi
from winosim.synthetic import mask_bytes, synthetic_trace
from winosim.trace import VARIANT_METHODS, LayerMasks, Trace, load_trace, trace_metadata, write_trace

LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 16, 16, 16, kernel=3, stride=1, padding=1),
    LayerGeometry("a", "winograd", "conv", 16, 32, 16, 16, kernel=3, stride=1, padding=1),
    LayerGeometry("b", "winograd", "conv", 32, 32, 16, 16, kernel=3, stride=1, padding=1),
    LayerGeometry("proj", "spatial", "conv", 32, 32, 16, 16, kernel=1, stride=2, padding=0),
    LayerGeometry("fc", "spatial", "fc", 32, 10, 1, 1, kernel=1),
)
NET = NetworkGeometry("small", 16, 16, 10, LAYERS)


def _masks(trace: Trace, method: str, layer: int) -> LayerMasks:
    return next(v for v in trace.variants if v.method == method).masks[layer]


def test_same_seed_same_bytes_other_seed_other_masks(tmp_path: Path) -> None:
    first = write_trace(synthetic_trace(NET, images=2, seed=3), tmp_path / "a.npz")
    second = write_trace(synthetic_trace(NET, images=2, seed=3), tmp_path / "b.npz")
    assert first.read_bytes() == second.read_bytes()
    other = synthetic_trace(NET, images=2, seed=4)
    assert not np.array_equal(
        _masks(other, "winograd_relu", 1).weight, _masks(load_trace(first), "winograd_relu", 1).weight
    )


def test_one_variant_per_method_named_after_it():
    trace = synthetic_trace(NET, images=1, methods=("winograd_relu", "spatial"))
    assert [(v.name, v.method) for v in trace.variants] == [("winograd_relu", "winograd_relu"), ("spatial", "spatial")]
    assert all(v.target_density == 0.3 and v.accuracy is None for v in trace.variants)


def test_it_is_labelled_synthetic_everywhere():
    trace = synthetic_trace(NET, images=1)
    assert trace.provenance.synthetic is True
    assert "SYNTHETIC" in trace.provenance.notes
    assert "synthetic" in trace.provenance.dataset
    meta = trace_metadata(trace)
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["WARNING"]
    assert all(v.recipe["synthetic"] is True for v in trace.variants)


@pytest.mark.parametrize(("weight_density", "activation_density"), [(0.3, 0.5), (0.1, 0.8)])
def test_measured_densities_are_near_the_targets_without_variation(weight_density, activation_density):
    """With variation 0 every mask bit is an independent Bernoulli draw: over ~25 k weights and ~100 k
    activations per variant, the measured densities are within 0.01 of the targets (> 5 sigma)."""
    trace = synthetic_trace(
        NET, images=4, weight_density=weight_density, activation_density=activation_density, variation=0.0
    )
    for variant in trace.variants:
        assert trace.weight_density(variant) == pytest.approx(weight_density, abs=0.01)
        if variant.method != "native":
            assert trace.activation_density(variant) == pytest.approx(activation_density, abs=0.01)


def test_native_winograd_activations_are_filled_in_by_the_input_transform():
    """paper.md section 2: B^T ReLU(d) B is non-zero wherever any of the spatial values it sums is. Every
    F(2x2,3x3) position sums 2 x 2 = 4 inputs (each B^T row has two non-zeros), so in interior tiles the
    density is 1 - (1 - a)^4, e.g. 0.9375 for a = 0.5. In the top row of tiles, position (0, 0) sums tile rows
    0 and 2 and columns 0 and 2; row 0 is padding, so it sees 2 inputs: 1 - (1 - a)^2 = 0.75."""
    a = 0.5
    trace = synthetic_trace(NET, images=4, activation_density=a, variation=0.0, methods=("native",))
    act = _masks(trace, "native", 2).activation  # (N, C, 8, 8, 16); layer input is 16x16
    interior = act[:, :, 1:-1, 1:-1, :]
    assert interior.mean() == pytest.approx(1 - (1 - a) ** 4, abs=0.01)
    assert act[:, :, 0, 1:-1, 0].mean() == pytest.approx(1 - (1 - a) ** 2, abs=0.05)


def test_variation_spreads_densities_across_positions_and_channels():
    uniform = synthetic_trace(NET, images=2, variation=0.0, methods=("winograd_relu",))
    varied = synthetic_trace(NET, images=2, variation=0.5, methods=("winograd_relu",))

    def spreads(trace):
        masks = _masks(trace, "winograd_relu", 2)
        return (
            masks.weight.mean(axis=(0, 1)).std(),  # per Winograd position
            masks.weight.mean(axis=(1, 2)).std(),  # per output channel
            masks.activation.mean(axis=(0, 2, 3, 4)).std(),  # per input channel
            masks.activation.mean(axis=(0, 1, 2, 3)).std(),  # per Winograd position
        )

    for flat, spread in zip(spreads(uniform), spreads(varied), strict=True):
        assert flat < 0.02
        assert spread > 0.05
        assert spread > 3 * flat


def test_unpruned_layers_are_dense_and_the_image_is_dense():
    trace = synthetic_trace(NET, images=2, weight_density=0.2)
    for variant in trace.variants:
        assert variant.masks[0].activation.all()  # the first layer's input is the image
        for index, layer in enumerate(LAYERS):
            if layer.kind == "spatial":
                assert variant.masks[index].weight.all(), layer.name
            else:
                assert not variant.masks[index].weight.all(), layer.name


@pytest.mark.parametrize("geometry", [vgg_nagadomi(), convpool_cnn_c()], ids=lambda g: g.name)
def test_known_geometries_build_valid_traces(geometry):
    trace = synthetic_trace(geometry, images=1, methods=("winograd_relu",))
    assert trace.network == geometry.name
    assert trace.layers == geometry.layers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight_density": 1.5}, "weight_density must be in \\[0, 1\\], got 1.5"),
        ({"activation_density": -0.1}, "activation_density must be in \\[0, 1\\], got -0.1"),
        ({"variation": -1.0}, "variation must be a finite number >= 0, got -1.0"),
        ({"variation": float("nan")}, "variation must be a finite number >= 0, got nan"),
        ({"variation": float("inf")}, "variation must be a finite number >= 0, got inf"),
        ({"weight_density": float("nan")}, "weight_density must be in \\[0, 1\\], got nan"),
        ({"seed": -1}, "seed must be an integer in \\[0, 2\\^63 - 1\\], got -1"),
        ({"seed": 2**63}, "seed must be an integer in"),
        ({"images": 10**8}, "would take .* GiB of memory, above the limit of 2 GiB"),
        ({"images": 8, "max_mask_bytes": 1000}, "above the limit of 1000 bytes"),
        ({"images": 0}, "images must be >= 1, got 0"),
        ({"methods": ("dense",)}, "methods must be a non-empty subset"),
        ({"methods": ()}, "methods must be a non-empty subset"),
        ({"methods": ("native", "native")}, "methods must not repeat"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        synthetic_trace(NET, **kwargs)


def test_the_size_check_is_exact_and_comes_before_any_allocation():
    """`mask_bytes` is the sum of the mask shapes' sizes; a trace of exactly that many bytes is allowed, one
    byte less is refused."""
    needed = mask_bytes(NET, 2, VARIANT_METHODS)
    trace = synthetic_trace(NET, images=2, max_mask_bytes=needed)
    assert needed == sum(m.weight.size + m.activation.size for v in trace.variants for m in v.masks)
    with pytest.raises(ConfigError, match="above the limit"):
        synthetic_trace(NET, images=2, max_mask_bytes=needed - 1)
