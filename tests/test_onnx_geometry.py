"""Geometry from ONNX (`winosim.onnx_geometry`, `winosim synth --onnx`): conv and FC layers with inferred shapes,
unsupported operators listed one line each and skipped, a synthetic trace labelled synthetic. The oracle: the
geometry of a torchvision-style ResNet-18 exported to ONNX equals the one `winosim.nn.convert` measures in torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnx
from onnx import TensorProto, helper, numpy_helper

from winosim import cli
from winosim.onnx_geometry import OnnxError, onnx_geometry
from winosim.trace import load_trace


def _weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def _small_cnn(path: Path, *, height: int | str = 32) -> Path:
    """conv 3->8 (stem), ReLU, conv 8->8 (Winograd), max-pool, conv 8->16 stride 2, grouped conv (unsupported),
    ConvTranspose (unsupported), an LSTM-free custom op (unsupported), global pool, flatten, Gemm 16->10."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c2"], ["p2"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "w3"], ["c3"], name="down", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["c3", "w4"], ["c4"], name="grouped", pads=[1, 1, 1, 1], group=4),
        helper.make_node("ConvTranspose", ["c4", "w5"], ["c5"], name="up", strides=[2, 2], kernel_shape=[2, 2]),
        helper.make_node("Conv", ["c5", "w6"], ["c6"], name="same", auto_pad="SAME_UPPER"),
        helper.make_node("GlobalAveragePool", ["c6"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
        helper.make_node("Einsum", ["y", "y"], ["z"], name="outer", equation="bi,bj->bij"),
    ]
    initializers = [
        _weight("w1", 8, 3, 3, 3),
        _weight("w2", 8, 8, 3, 3),
        _weight("w3", 16, 8, 3, 3),
        _weight("w4", 16, 4, 3, 3),
        _weight("w5", 16, 16, 2, 2),
        _weight("w6", 16, 16, 3, 3),
        _weight("wf", 10, 16),
        _weight("bf", 10),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_conv_and_fc_layers_with_inferred_shapes_and_unsupported_operators(tmp_path: Path) -> None:
    read = onnx_geometry(_small_cnn(tmp_path / "small.onnx"))
    layers = {layer.name: layer for layer in read.geometry.layers}
    assert list(layers) == ["stem", "conv2", "down", "same", "fc"]
    assert [layer.kind for layer in layers.values()] == ["spatial", "winograd", "spatial", "winograd", "spatial"]
    assert (layers["conv2"].in_channels, layers["conv2"].in_height, layers["conv2"].padding) == (8, 32, 1)
    assert (layers["down"].in_height, layers["down"].stride, layers["down"].out_height) == (16, 2, 8)
    assert (layers["same"].in_height, layers["same"].padding) == (16, 1)  # after the stride-2 ConvTranspose
    assert (layers["fc"].op, layers["fc"].in_channels, layers["fc"].out_channels) == ("fc", 16, 10)
    assert read.geometry.name == "small" and (read.geometry.input_height, read.geometry.input_width) == (32, 32)
    assert read.unsupported == (
        "Conv 'grouped': groups 4 (winosim's geometry has no grouped convolutions); skipped",
        "ConvTranspose 'up': not a convolution or fully connected layer winosim models; skipped",
        "Einsum 'outer': not a convolution or fully connected layer winosim models; skipped",
    )


def test_dynamic_input_size_needs_input_shape(tmp_path: Path) -> None:
    path = _small_cnn(tmp_path / "dynamic.onnx", height="H")
    with pytest.raises(OnnxError, match="--input-shape"):
        onnx_geometry(path)
    read = onnx_geometry(path, input_shape=(3, 64, 32))
    assert read.geometry.input_height == 64 and read.geometry.layer("conv2").in_height == 64


def test_synth_onnx_writes_a_synthetic_trace_and_lists_unsupported_operators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model = _small_cnn(tmp_path / "small.onnx")
    out = tmp_path / "small.npz"
    argv = ["synth", "--onnx", str(model), "--images", "2", "--weight-density", "0.4", "--output", str(out)]
    assert cli.main(argv) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # stderr lines in the CLI
    assert len(warned) == 3 and all(line.startswith("unsupported ONNX operator ") for line in warned)
    assert "ConvTranspose 'up'" in warned[1]
    trace = load_trace(out)
    assert trace.provenance.synthetic and "SYNTHETIC" in trace.provenance.notes
    assert "3 unsupported ONNX operators skipped" in trace.provenance.notes
    assert trace.provenance.command.startswith(f"winosim synth --onnx {model} --images 2 --weight-density 0.4")
    assert all(v.recipe["synthetic"] for v in trace.variants)
    assert [layer.name for layer in trace.layers] == ["stem", "conv2", "down", "same", "fc"]
    assert cli.main(["run", "--trace", str(out), "--pe", "16", "--totals-only"]) == 0
    assert "synthetic" in capsys.readouterr().out.lower()


def _no_winograd_cnn(path: Path) -> Path:
    """The RGB stem (3 inputs), a strided 3x3 and a 5x5 convolution, then the classifier: nothing F(2x2,3x3) takes."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="down", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["c2", "w3"], ["c3"], name="wide", pads=[2, 2, 2, 2]),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1),
    ]
    initializers = [
        _weight("w1", 8, 3, 3, 3),
        _weight("w2", 8, 8, 3, 3),
        _weight("w3", 8, 8, 5, 5),
        _weight("wf", 10, 8),
    ]
    graph = helper.make_graph(
        nodes,
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--onnx", "{missing}"], "ONNX file not found"),
        (["--onnx", "{garbage}"], "not a readable ONNX model"),
        (["--onnx", "{model}", "--network", "vgg_nagadomi"], "not allowed with argument"),
        (["--network", "vgg_nagadomi", "--input-shape", "3,32,32"], "--input-shape applies to --onnx"),
        (["--onnx", "{model}", "--input-shape", "3,x,32"], "argument --input-shape: expected C,H,W, three integers"),
        (["--onnx", "{model}", "--input-shape", "3,32"], "argument --input-shape: expected C,H,W, three integers"),
        (["--onnx", "{model}", "--input-shape", "3,0,32"], "argument --input-shape: expected C,H,W, three integers"),
        (["--onnx", "{folder}"], "is a directory, not an ONNX file"),
        (["--onnx", "{empty}"], "not an ONNX model (its graph has no nodes)"),
        # as a torch model's conversion refuses one: every method would compute such a network alike
        (["--onnx", "{plain}"], "no Winograd-eligible convolution (3x3, stride 1, padding 1, more than 3 input"),
        (["--onnx", "{plain}"], "convolutions: stem (3x3, stride 1, padding 1, 3 inputs); down (3x3, stride 2,"),
    ],
)
def test_bad_onnx_input_is_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf\xff" * 3)
    model = _small_cnn(tmp_path / "m.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")  # protobuf reads it as an empty model
    (tmp_path / "folder.onnx").mkdir()
    names = {
        "missing": tmp_path / "missing.onnx",
        "garbage": garbage,
        "model": model,
        "empty": tmp_path / "empty.onnx",
        "folder": tmp_path / "folder.onnx",
        "plain": _no_winograd_cnn(tmp_path / "plain.onnx"),
    }
    filled = [a.format(**names) for a in argv]
    assert cli.main(["synth", *filled, "--output", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("winosim: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "t.npz").exists()


def test_exported_resnet18_geometry_equals_the_torch_geometry(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from examples.models import resnet18
    from winosim.nn.conversion import convert

    model = resnet18(num_classes=10).eval()
    path = tmp_path / "resnet18.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False)
    except Exception as exc:  # the TorchScript exporter may be gone from a future torch
        pytest.skip(f"torch.onnx.export(dynamo=False) unavailable: {exc}")
    read = onnx_geometry(path)
    assert read.unsupported == ()
    torch_geometry = convert(model, "native", input_shape=(3, 32, 32)).geometry

    def shape(layer: object) -> tuple[object, ...]:
        return tuple(getattr(layer, f) for f in ("kind", "op", "in_channels", "out_channels", "in_height", "kernel"))

    assert [shape(layer) for layer in read.geometry.layers] == [shape(layer) for layer in torch_geometry.layers]
    assert [layer.stride for layer in read.geometry.layers] == [layer.stride for layer in torch_geometry.layers]
