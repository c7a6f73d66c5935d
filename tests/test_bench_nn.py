"""benchmarks/bench_nn.py's layer section: the shapes it times are the networks' Winograd layers, and its
'products' stand-in is the layer's element-wise stage (same product, same shapes as inside the layer)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_nn", ROOT / "benchmarks" / "bench_nn.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_layer_shapes_are_the_networks_winograd_layers() -> None:
    bench = _bench()
    vgg = bench.winograd_layer_shapes("vgg_nagadomi")
    assert vgg == {(64, 64, 32): 1, (64, 128, 16): 1, (128, 128, 16): 1, (128, 256, 8): 1, (256, 256, 8): 3}
    resnet = bench.winograd_layer_shapes("resnet18")
    assert sum(resnet.values()) == 16 and resnet[(64, 64, 32)] == 4 and resnet[(512, 512, 4)] == 3


def test_layer_times_are_positive_for_a_small_shape() -> None:
    times = _bench().layer_times_s(4, 8, 6, batch=2, precision="fp32", repeats=1)
    assert len(times) == 3 and all(t > 0 for t in times)
