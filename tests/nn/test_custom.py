"""Bring your own network: `winosim train --model MODULE:FACTORY` trains a model file from the working directory
with the built-in pipeline (dense, pruning, masked retraining, checkpoints, exact resume); `winosim trace` makes a
trace of it whose layers are the model's module paths and whose exact multiply counts equal a direct count from the
model's tensors; the trace runs through `run`, `inspect` and `sweep`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch
import torch.nn.functional as F

from winosim import cli
from winosim.counts import count_trace
from winosim.nn.conversion import ConvertedConv2d, ConvertedModel
from winosim.nn.data import load_dataset
from winosim.nn.extract import layer_inputs, sample_indices
from winosim.nn.layers import WinogradConv2d
from winosim.nn.train import load_checkpoint, model_from_checkpoint
from winosim.trace import load_trace

MODEL_FILE = '''
"""A user's model file: the small residual CNN of examples/models.py, width 8."""
from examples.models import SmallResidualCNN


def build(num_classes=10):
    return SmallResidualCNN(num_classes, width=8)


def no_eligible_layer():
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))


def not_a_module():
    return 42


def fails():
    raise RuntimeError("out of weights\\nand a second line nobody needs")
'''

IMAGES = 2
METHOD_OF_VARIANT = {"spatial": "pruned_spatial", "native": "native_winograd", "winograd_relu": "winograd_relu"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory holding the user's model file `byo_net.py` (not on sys.path: train must find it)."""
    folder = tmp_path_factory.mktemp("byo")
    (folder / "byo_net.py").write_text(MODEL_FILE)
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


def _train(data: Path, out: str, method: str, *extra: str) -> int:
    return cli.main(
        [
            "train",
            "--model",
            "byo_net:build",
            "--method",
            method,
            "--data",
            str(data),
            "--epochs",
            "1",
            "--densities",
            "0.5",
            "--retrain-epochs",
            "1",
            "--batch-size",
            "32",
            "--test-limit",
            "16",
            "--no-progress",
            "--out",
            out,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def runs(workdir: Path, random_data: Path) -> dict[str, Path]:
    assert _train(random_data, "runs/sp", "spatial") == 0
    assert _train(random_data, "runs/wr", "winograd_relu") == 0
    assert _train(random_data, "runs/wr_resumed", "winograd_relu", "--max-steps", "3") == 0
    assert not (workdir / "runs/wr_resumed/phase1_d0.50.pt").exists()
    assert cli.main(["train", "--out", "runs/wr_resumed", "--resume", "--no-progress"]) == 0
    assert _train(random_data, "runs/nat", "native", "--init-from", "runs/sp/phase0_dense.pt", "--epochs", "0") == 0
    return {name: workdir / "runs" / name for name in ("sp", "wr", "wr_resumed", "nat")}


@pytest.fixture(scope="module")
def trace_path(runs: dict[str, Path], random_data: Path) -> Path:
    out = runs["sp"].parent / "byo.npz"
    checkpoints = [str(runs["sp"] / "phase1_d0.50.pt"), str(runs["wr"] / "phase1_d0.50.pt")]
    argv = ["trace", *checkpoints, "--data", str(random_data), "--images", str(IMAGES), "--test-limit", "16"]
    assert cli.main([*argv, "--seed", "3", "--out", str(out)]) == 0
    return out


def test_checkpoints_record_the_factory_and_resume_exactly(runs: dict[str, Path]) -> None:
    ckpt = load_checkpoint(runs["wr"] / "phase1_d0.50.pt")
    assert ckpt["config"]["model_factory"] == "byo_net:build" and ckpt["config"]["input_shape"] == [3, 32, 32]
    assert ckpt["config"]["network"] == "build"
    model = model_from_checkpoint(ckpt)
    assert isinstance(model, ConvertedModel) and model.mode == "winograd_relu"
    assert ckpt["measured_density"] == pytest.approx(0.5, abs=1e-3)
    resumed = load_checkpoint(runs["wr_resumed"] / "phase1_d0.50.pt")["model"]
    for key, value in ckpt["model"].items():
        assert torch.equal(value, resumed[key]), key
    metrics = [json.loads(line) for line in (runs["wr"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == [0, 1] and set(metrics[1]["layer_density"]) == {
        "conv_a",
        "conv_b",
        "conv_c",
        "conv_d",
    }


def test_native_from_a_spatial_run_computes_the_spatial_model(runs: dict[str, Path], random_data: Path) -> None:
    """--init-from: U = G g G^T per converted layer, everything else (biases, batch norms, stem, head) copied,
    so the native model at the start of its run computes the spatial dense model's function."""
    spatial = model_from_checkpoint(load_checkpoint(runs["sp"] / "phase0_dense.pt")).double()
    native = model_from_checkpoint(load_checkpoint(runs["nat"] / "phase0_dense.pt")).double()
    assert isinstance(native, ConvertedModel) and native.mode == "native"
    conv_a = native.get_submodule("conv_a")
    assert isinstance(conv_a, ConvertedConv2d) and conv_a.bias is not None and conv_a.bias.abs().sum() > 0
    x, _ = load_dataset(random_data, "test").take(list(range(4)))
    with torch.no_grad():
        # U is stored in float32: agreement to float32 rounding of the weights
        torch.testing.assert_close(native(x.double()), spatial(x.double()), rtol=1e-6, atol=1e-6)


def _direct_multiplies(model: ConvertedModel, x: torch.Tensor) -> dict[str, int]:
    """Zero-skipping multiplies per layer from the model's own tensors: indicator tensors through the layer's
    operation (bmm over the 16 positions, conv2d, linear)."""
    inputs = layer_inputs(model, x)
    out: dict[str, int] = {}
    for geom, module in model.layer_modules():
        inp = inputs[geom.name].double()
        if isinstance(module, ConvertedConv2d) and module.mode != "spatial":
            v = (module.winograd_activation(inp.float()) != 0).double()
            u = (module.masked_weight() != 0).double()
            out[geom.name] = int(torch.bmm(u.transpose(1, 2), v.flatten(2)).sum())
        elif isinstance(module, ConvertedConv2d):
            ones = (module.spatial_activation(inp) != 0).double()
            out[geom.name] = int(F.conv2d(ones, (module.masked_weight() != 0).double(), padding=1).sum())
        elif isinstance(module, torch.nn.Linear):
            out[geom.name] = int(F.linear(torch.ne(inp, 0).double(), torch.ne(module.weight, 0).double()).sum())
        else:
            assert isinstance(module, torch.nn.Conv2d) and not isinstance(module, WinogradConv2d)
            w = torch.ne(module.weight, 0).double()
            ones = torch.ne(inp, 0).double()
            out[geom.name] = int(F.conv2d(ones, w, stride=module.stride, padding=module.padding).sum())
    return out


def test_trace_layers_are_module_paths_and_counts_equal_direct_counts(
    runs: dict[str, Path], trace_path: Path, random_data: Path
) -> None:
    trace = load_trace(trace_path)
    assert trace.network == "build" and not trace.provenance.synthetic
    assert [layer.name for layer in trace.layers] == [
        "stem",
        "conv_a",
        "conv_b",
        "conv_c",
        "down",
        "conv_d",
        "head",
    ]
    assert [layer.kind for layer in trace.layers].count("winograd") == 4
    assert [v.method for v in trace.variants] == ["spatial", "winograd_relu"]
    for variant in trace.variants:
        assert variant.recipe["model_factory"] == "byo_net:build" and variant.accuracy is not None
        assert trace.weight_density(variant) == pytest.approx(0.5, abs=1e-3)
    test = load_dataset(random_data, "test")
    x, _ = test.take(sample_indices(len(test), IMAGES, 3))
    counts = count_trace(trace)
    for run, variant in zip(("sp", "wr"), trace.variants, strict=True):
        model = model_from_checkpoint(load_checkpoint(runs[run] / "phase1_d0.50.pt"))
        assert isinstance(model, ConvertedModel)
        method = METHOD_OF_VARIANT[variant.method]
        from_trace = {c.layer: c.multiplies for c in counts if c.method == method and c.variant == variant.name}
        assert from_trace == _direct_multiplies(model, x), variant.name
    # conv_d has no ReLU in front: its Winograd-ReLU activations are the dense transform of a signed input.
    conv_d = [layer.name for layer in trace.layers].index("conv_d")
    assert trace.variant("winograd_relu").masks[conv_d].activation.mean() > 0.95


def test_trace_runs_through_run_inspect_and_sweep(
    trace_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--trace", str(trace_path), "--pe", "16", "--totals-only", "--format", "md"]) == 0
    table = capsys.readouterr().out
    assert "| TOTAL | Winograd-ReLU | winograd_relu |" in table and "| TOTAL | pruned spatial | spatial |" in table
    assert cli.main(["inspect", str(trace_path)]) == 0
    assert "network build" in capsys.readouterr().out
    argv = ["sweep", "--trace", str(trace_path), "--grid", "pe=16,32", "--jobs", "1", "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "results.csv").is_file()


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("byo_net", "must be MODULE:FACTORY"),
        ("not_a_module_here:build", "no module 'not_a_module_here' in the working directory"),
        ("byo_net:missing", "byo_net has no function 'missing'"),
        ("byo_net:no_eligible_layer", "no Winograd-eligible nn.Conv2d"),
        ("byo_net:not_a_module", "--model byo_net:not_a_module: returned 'int', not a torch.nn.Module"),
        ("byo_net:fails", "--model byo_net:fails: calling it fails (RuntimeError: out of weights)"),
    ],
)
def test_bad_factories_are_one_line_errors(
    factory: str, message: str, workdir: Path, random_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", factory, "--method", "native", "--data", str(random_data), "--out", "runs/bad"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("winosim: error: ") and message in err and "\n" not in err
    assert cli.main(["train", "--model", "byo_net:build", "--network", "resnet18", "--out", "x"]) == 2
