"""Extraction: a trace from checkpoints of the three methods validates, round-trips, carries provenance, and
its exact multiply counts (winosim.counts) equal a direct count from the model's own tensors."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import torch
import torch.nn.functional as F

from winosim.counts import count_trace
from winosim.errors import ConfigError
from winosim.nn.data import load_dataset
from winosim.nn.extract import extract_trace, layer_inputs, sample_indices
from winosim.nn.layers import WinogradConv2d
from winosim.nn.models import WinoNet, build_model
from winosim.nn.prune import prune_network
from winosim.nn.train import TrainConfig, TrainState, _checkpoint, atomic_save, model_from_checkpoint
from winosim.nn.train_args import train_config_from_args, train_parser
from winosim.trace import load_trace, write_trace

METHOD_OF_VARIANT = {"spatial": "pruned_spatial", "native": "native_winograd", "winograd_relu": "winograd_relu"}
IMAGES = 3


def _save(mode: str, data: Path, folder: Path, density: float) -> Path:
    torch.manual_seed({"spatial": 0, "native": 1, "winograd_relu": 2}[mode])
    config = TrainConfig(
        network="vgg_nagadomi",
        mode=mode,
        data=str(data),
        out=str(folder),
        num_classes=10,
        densities=(0.7, density),
        dropout=False,
    )
    model = build_model("vgg_nagadomi", mode, 10, dropout=False)
    prune_network(model, density)
    with torch.no_grad():  # make the batch norms non-trivial so that activations are not all half-zero
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.uniform_(-0.5, 0.5)
    state = TrainState(phase=2, dense_accuracy=0.5)
    if mode == "winograd_relu":  # a run that changed machine, and precision, part-way
        state.segments = [
            {"from_step": 0, "machine": "CPU A", "precision": "bf16"},
            {"from_step": 7, "machine": "CPU B", "precision": "fp32"},
        ]
    path = folder / f"{mode}.pt"
    atomic_save(_checkpoint(model, None, config, state, accuracy=0.25, density=density, dense_accuracy=0.5), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(random_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    return [_save(mode, random_data, folder, 0.4) for mode in ("spatial", "native", "winograd_relu")]


@pytest.fixture(scope="module")
def trace_path(checkpoints: list[Path], random_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trace = extract_trace(checkpoints, random_data, images=IMAGES, seed=3, test_limit=8, command="test")
    return write_trace(trace, tmp_path_factory.mktemp("trace") / "t.npz")


def _direct_multiplies(model: WinoNet, x: torch.Tensor) -> dict[str, int]:
    """Zero-skipping multiplies per layer, counted with torch from the model's tensors: products of
    indicator tensors through the layer's own operation (bmm / conv2d / linear)."""
    inputs = layer_inputs(model, x)
    out: dict[str, int] = {}
    for geom, module in model.layer_modules():
        inp = inputs[geom.name].double()
        if isinstance(module, WinogradConv2d) and module.mode != "spatial":
            v = (module.winograd_activation(inp.float()) != 0).double()  # (16, C, N, TH, TW)
            u = (module.masked_weight() != 0).double()  # (16, C, K)
            out[geom.name] = int(torch.bmm(u.transpose(1, 2), v.flatten(2)).sum())
        elif isinstance(module, WinogradConv2d):
            w = (module.masked_weight() != 0).double()
            out[geom.name] = int(F.conv2d((torch.relu(inp) != 0).double(), w, padding=1).sum())
        elif isinstance(module, torch.nn.Linear):
            out[geom.name] = int(F.linear(torch.ne(inp, 0).double(), torch.ne(module.weight, 0).double()).sum())
        else:
            assert isinstance(module, torch.nn.Conv2d)
            w = torch.ne(module.weight, 0).double()
            ones = torch.ne(inp, 0).double()
            out[geom.name] = int(F.conv2d(ones, w, stride=module.stride, padding=module.padding).sum())
    return out


def test_trace_counts_equal_direct_counts_from_the_model(
    checkpoints: list[Path], trace_path: Path, random_data: Path
) -> None:
    trace = load_trace(trace_path)
    test = load_dataset(random_data, "test")
    x, _ = test.take(sample_indices(len(test), IMAGES, 3))
    counts = count_trace(trace)
    for path, variant in zip(checkpoints, trace.variants, strict=True):
        model = model_from_checkpoint(torch.load(path, weights_only=True))
        direct = _direct_multiplies(model, x)
        method = METHOD_OF_VARIANT[variant.method]
        from_trace = {c.layer: c.multiplies for c in counts if c.method == method and c.variant == variant.name}
        assert from_trace == direct, variant.name


def test_trace_metadata_and_masks(trace_path: Path, checkpoints: list[Path]) -> None:
    trace = load_trace(trace_path)
    assert trace.network == "vgg_nagadomi" and trace.images == IMAGES
    assert [v.name for v in trace.variants] == ["spatial", "native", "winograd_relu"]
    assert not trace.provenance.synthetic and trace.provenance.torch_version
    assert "test images" in trace.provenance.notes
    for i, variant in enumerate(trace.variants):
        assert variant.target_density == 0.4 and variant.dense_accuracy == 0.5
        assert variant.accuracy is not None and 0 <= variant.accuracy <= 1
        assert variant.recipe["method"] == variant.method
        # where it ran: the checkpoint's machine (saved by `_checkpoint`) and the extraction's, here this CPU
        machine = f"{os.cpu_count()} cores (cpu, torch {torch.__version__})"
        assert variant.recipe["trained_on"].endswith(machine) and variant.recipe["extracted_on"].endswith(machine)
        # where and in which precision its steps ran, as the run recorded it (None: not recorded)
        assert variant.recipe["trained_in"] == (
            [
                {"from_step": 0, "machine": "CPU A", "precision": "bf16"},
                {"from_step": 7, "machine": "CPU B", "precision": "fp32"},
            ]
            if variant.name == "winograd_relu"
            else None
        )
        # the exact command that trained it: re-parsed, it asks for the checkpoint's configuration
        command = shlex.split(variant.recipe["train_command"])
        assert command[:4] == ["python", "-m", "winosim", "train"]
        stored = TrainConfig.from_dict(torch.load(checkpoints[i], weights_only=True)["config"])
        assert train_config_from_args(train_parser().parse_args(command[4:])) == stored
        assert variant.recipe["label_smoothing"] == stored.label_smoothing
        assert trace.weight_density(variant) == pytest.approx(0.4, abs=1e-3)
        conv2 = variant.masks[1]
        assert conv2.weight.shape == ((64, 64, 3, 3) if variant.method == "spatial" else (64, 64, 16))
    # Winograd-ReLU multiplies sparse Winograd-domain activations; native's are dense after the transform.
    relu_density = trace.activation_density(trace.variant("winograd_relu"))
    native_density = trace.activation_density(trace.variant("native"))
    assert 0.2 < relu_density < 0.8 and native_density > relu_density


def test_winograd_relu_activation_mask_is_v_positive(
    checkpoints: list[Path], trace_path: Path, random_data: Path
) -> None:
    trace = load_trace(trace_path)
    test = load_dataset(random_data, "test")
    x, _ = test.take(sample_indices(len(test), IMAGES, 3))
    model = model_from_checkpoint(torch.load(checkpoints[2], weights_only=True))
    inputs = layer_inputs(model, x)
    from winosim.nn.layers import input_transform

    v = input_transform(inputs["conv5"]).permute(2, 1, 3, 4, 0)  # (N, C, TH, TW, 16)
    index = [layer.name for layer in trace.layers].index("conv5")
    np.testing.assert_array_equal(trace.variant("winograd_relu").masks[index].activation, (v > 0).numpy())


def test_extraction_rejects_mixed_networks_and_bad_names(
    checkpoints: list[Path], random_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="names"):
        extract_trace(checkpoints, random_data, images=2, names=["a"], test_limit=4)
    with pytest.raises(ConfigError, match="--images"):
        extract_trace(checkpoints[:1], random_data, images=10_000, test_limit=4)


def test_trace_of_a_folder_without_a_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dataset folder passed where a run folder belongs is named as what it is, not as a run folder."""
    from winosim import cli

    assert cli.main(["trace", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "t.npz")]) == 2
    assert f"{tmp_path} is a folder without a training run (no last.pt or phase checkpoints)" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()
