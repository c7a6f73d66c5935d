"""The traces shipped in traces/: each loads and validates, matches its network's geometry, stays within the
size budget, and (for traces from trained models) states accuracies and densities consistent with its masks."""

from __future__ import annotations

from pathlib import Path

import pytest

from winosim.geometry import NETWORKS, network
from winosim.trace import load_trace

TRACES = sorted((Path(__file__).resolve().parents[1] / "traces").glob("*.npz"))
MAX_BYTES = 16 * 1024 * 1024


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
    assert trace.provenance.torch_version and trace.provenance.command.startswith("python -m winosim trace")
    assert {v.method for v in trace.variants} == {"spatial", "native", "winograd_relu"}
    for variant in trace.variants:
        assert variant.accuracy is not None and 0.0 <= variant.accuracy <= 1.0
        assert variant.dense_accuracy is not None and 0.0 <= variant.dense_accuracy <= 1.0
        assert variant.target_density is not None
        # pruning keeps round(d * size) weights per layer, so the measured density is the target to rounding
        assert trace.weight_density(variant) == pytest.approx(variant.target_density, abs=1e-3)
        assert variant.recipe["method"] == variant.method
        assert 0.0 < trace.activation_density(variant) < 1.0
