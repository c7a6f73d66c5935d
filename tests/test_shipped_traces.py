"""The traces shipped in traces/: each loads and validates, matches its network's geometry, stays within the
size budget, and (for traces from trained models) states accuracies and densities consistent with its masks."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from winosim.geometry import NETWORKS, network
from winosim.trace import Variant, load_trace

TRACES_DIR = Path(__file__).resolve().parents[1] / "traces"
TRACES = sorted(TRACES_DIR.glob("*.npz"))
MAX_BYTES = 16 * 1024 * 1024
TRAINED = {"resnet18.npz": "resnet18_cifar", "vgg_nagadomi.npz": "vgg_nagadomi"}  # issue 6: file -> geometry


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_the_trained_traces_are_shipped(name: str) -> None:
    trace = load_trace(TRACES_DIR / name)
    assert trace.network == TRAINED[name] and not trace.provenance.synthetic
    assert "cifar" in trace.provenance.dataset.lower()
    for variant in trace.variants:
        assert "density_search" in variant.recipe, f"{name}: {variant.name} was not chosen by the density search"


def check_density_search(search: dict[str, Any], target_density: float, checkpoint: str) -> None:
    """The recorded search is a well-formed curve, and the traced checkpoint is the one its rule selects."""
    points = search["points"]
    assert points[0]["density"] == 1.0 and points[0]["phase"] == 0
    assert [p["phase"] for p in points] == list(range(len(points)))
    assert all(a["density"] > b["density"] for a, b in itertools.pairwise(points))
    assert [p["density"] for p in points[1:]] == search["schedule"][: len(points) - 1]
    assert search["complete"] == (len(points) == len(search["schedule"]) + 1)
    floor = points[0]["accuracy"] - search["within_points"] / 100.0
    passing = [p for p in points if p["accuracy"] >= floor - 1e-12]
    chosen = min(passing, key=lambda p: p["density"])
    assert search["selected_density"] == chosen["density"] == target_density
    assert search["selected_checkpoint"] == chosen["checkpoint"] == checkpoint


@pytest.mark.skipif(not TRACES, reason="no traces shipped in traces/")
@pytest.mark.parametrize("path", TRACES, ids=[p.name for p in TRACES])
def test_shipped_trace(path: Path) -> None:
    assert path.stat().st_size <= MAX_BYTES
    trace = load_trace(path)  # validates every mask against the geometry
    if trace.network in NETWORKS:
        assert trace.layers == network(trace.network).layers[: len(trace.layers)]
    if trace.provenance.synthetic:
        return
    assert trace.images >= 8
    assert trace.provenance.torch_version
    command = trace.provenance.command
    assert command.startswith(("python -m winosim trace", "python -m winosim merge"))
    if command.startswith("python -m winosim merge"):  # each variant names the extraction it came from
        for variant in trace.variants:
            assert variant.recipe["extraction"]["command"].startswith("python -m winosim trace"), variant.name
    assert {v.method for v in trace.variants} == {"spatial", "native", "winograd_relu"}
    for variant in trace.variants:
        assert variant.accuracy is not None and 0.0 <= variant.accuracy <= 1.0
        assert variant.dense_accuracy is not None and 0.0 <= variant.dense_accuracy <= 1.0
        assert variant.target_density is not None
        # pruning keeps round(d * size) weights per layer, so the measured density is the target to rounding
        assert trace.weight_density(variant) == pytest.approx(variant.target_density, abs=1e-3)
        assert variant.recipe["method"] == variant.method
        assert 0.0 < trace.activation_density(variant) < 1.0
        if "density_search" in variant.recipe:
            check_density_search(variant.recipe["density_search"], variant.target_density, variant.recipe["checkpoint"])


DENSE_BAR = 0.92  # issue 10: every dense model behind a shipped variant, all 10,000 CIFAR-10 test images
WITHIN = 0.005  # and each variant within 0.5 point of its own dense model
# A shipped variant measured short of the bars would be listed here with its reason (traces/README.md saying so),
# strictly: once a new trace meets a bar its entry fails and must be removed; the bars themselves stay. Every
# shipped variant meets them since 2026-12-03 (ResNet-18's Winograd-ReLU: 28 dense epochs, dense 92.40%).
SHORT_OF_THE_BAR: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("method", ["spatial", "native", "winograd_relu"])
@pytest.mark.parametrize("name", sorted(TRAINED))
def test_issue_10_accuracy_bars(name: str, method: str, request: pytest.FixtureRequest) -> None:
    if (name, method) in SHORT_OF_THE_BAR:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SHORT_OF_THE_BAR[name, method]))
    assert_meets_the_bars(next(v for v in load_trace(TRACES_DIR / name).variants if v.method == method))


def assert_meets_the_bars(variant: Variant) -> None:
    """Issue 10's bars for one variant: measured on all 10,000 test images, dense >= 92%, within 0.5 point."""
    assert variant.accuracy is not None and variant.dense_accuracy is not None
    assert variant.recipe["test_images_for_accuracy"] == 10_000, variant.name
    assert variant.dense_accuracy >= DENSE_BAR, variant.name
    assert variant.accuracy >= variant.dense_accuracy - WITHIN, variant.name


PARTS_DIR = TRACES_DIR / "parts"
PARTS = sorted(PARTS_DIR.glob("*.npz"))


@pytest.mark.parametrize("path", PARTS, ids=[p.name for p in PARTS])
def test_trace_part_meets_the_bars(path: Path) -> None:
    """A part of a shipped trace still training (traces/parts/: its finished variants, to be merged with the
    rest, `winosim merge`) is kept only when each of its variants already meets issue 10's bars."""
    assert path.stat().st_size <= MAX_BYTES
    trace = load_trace(path)
    assert trace.network in TRAINED.values() and not trace.provenance.synthetic
    assert trace.layers == network(trace.network).layers[: len(trace.layers)]
    assert trace.provenance.command.startswith(("python -m winosim trace", "python -m winosim merge"))
    methods = [v.method for v in trace.variants]
    assert methods and len(set(methods)) == len(methods) and set(methods) < {"spatial", "native", "winograd_relu"}
    for variant in trace.variants:
        assert_meets_the_bars(variant)
        assert variant.target_density is not None
        assert trace.weight_density(variant) == pytest.approx(variant.target_density, abs=1e-3)
        check_density_search(variant.recipe["density_search"], variant.target_density, variant.recipe["checkpoint"])
