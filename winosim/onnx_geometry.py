"""Layer geometry of an ONNX CNN: its convolution and fully connected layers, for synthetic traces.

`onnx_geometry(path)` reads a model with the `onnx` package (optional extra `onnx`), infers every tensor's
shape with `onnx.shape_inference.infer_shapes`, and walks the graph's nodes in their (topological) order:

- `Conv` becomes a conv layer (input C x H x W, K = the weight's first dimension, square kernel, equal strides,
  equal pads on all sides or auto_pad SAME_*/VALID, dilation 1, group 1); a 3x3 / stride-1 / padding-1
  convolution with more than 3 input channels is of kind "winograd", every other one "spatial";
- `Gemm` (no transA) and `MatMul` by a constant 2-D weight, on a 2-D input, become fc layers;
- operators without multiplies that winosim's cost model ignores (activations, normalisation, pooling,
  element-wise arithmetic, shape manipulation) pass silently;
- everything else, and a Conv / Gemm / MatMul that does not fit winosim's geometry (grouped, dilated,
  asymmetric, transposed), is *unsupported*: skipped, and listed one line each in `OnnxGeometry.unsupported`
  (which `winosim synth --onnx` logs as warnings and records in the trace's provenance).

Layer names are the ONNX node names (op type and index when a node has none). Nothing here needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry, NetworkGeometry, winograd_eligible
from winosim.text import first_line

NO_MULTIPLY_OPS: frozenset[str] = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
        "Gelu", "Softplus", "Mish", "Erf", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
        "LRN", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sub", "Mul", "Div",
        "Sqrt", "Pow", "Neg", "Abs", "Exp", "Log", "Max", "Min", "Sum", "Mean", "Concat", "Split", "Slice",
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant",
        "ConstantOfShape", "Shape", "Gather", "Cast", "Softmax", "LogSoftmax", "Pad", "Resize", "Upsample",
        "ReduceMean", "ReduceMax", "ReduceSum", "Expand", "Tile", "Range", "Equal", "Where", "ArgMax",
    }
)  # fmt: skip
"""Operators that pass silently: no multiplies of a convolution or fully connected layer."""


class OnnxError(ConfigError):
    """An ONNX file that cannot be read, shape-inferred or turned into a geometry."""


@dataclass(frozen=True)
class OnnxGeometry:
    """The geometry read from an ONNX model and one line per unsupported (skipped) operator."""

    geometry: NetworkGeometry
    unsupported: tuple[str, ...]
    source: str


def _import_onnx() -> Any:
    try:
        import onnx
    except ModuleNotFoundError:
        raise OnnxError("reading ONNX models needs the onnx package (pip install -e '.[onnx]')") from None
    return onnx


def _dims(value_type: Any) -> tuple[int | None, ...] | None:
    if not value_type.HasField("tensor_type") or not value_type.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value_type.tensor_type.shape.dim)


def _attributes(onnx: Any, node: Any) -> dict[str, Any]:
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _load(onnx: Any, path: Path, input_shape: Sequence[int] | None) -> Any:
    if path.is_dir():
        raise OnnxError(f"{path}: is a directory, not an ONNX file")
    if not path.is_file():
        raise OnnxError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise OnnxError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:  # protobuf reads an empty file, and some others, as an empty model
        raise OnnxError(f"{path}: not an ONNX model (its graph has no nodes)")
    if input_shape is not None:
        inputs = _graph_inputs(model)
        if len(inputs) != 1:
            raise OnnxError(f"{path}: --input-shape needs a model with one input, it has {len(inputs)}")
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != 4 or len(input_shape) != 3:
            raise OnnxError(f"{path}: --input-shape is C,H,W for a 4-D (N, C, H, W) input")
        for dim, value in zip(list(dims)[1:], input_shape, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:
        raise OnnxError(f"{path}: ONNX shape inference fails ({first_line(exc)})") from None


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _conv_layer(
    name: str, attrs: dict[str, Any], x: tuple[int | None, ...] | None, w: tuple[int | None, ...] | None
) -> LayerGeometry | str:
    """A conv LayerGeometry, or the reason it is unsupported."""
    if x is None or w is None or len(x) != 4 or len(w) != 4 or None in x[1:] or None in w:
        return "2-D convolution with unknown shapes (pass --input-shape C,H,W?)"
    _, c, h, width = x
    k, _, kh, kw = w
    assert c is not None and h is not None and width is not None and k is not None
    assert kh is not None and kw is not None
    group = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if group != 1:
        return f"groups {group} (winosim's geometry has no grouped convolutions)"
    if kh != kw or strides[0] != strides[1]:
        return f"kernel {kh}x{kw}, strides {strides} (winosim's geometry needs square kernels and equal strides)"
    if dilations != [1, 1]:
        return f"dilations {dilations} (winosim's geometry has no dilated convolutions)"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if strides[0] != 1 or kh % 2 == 0:
            return f"auto_pad {auto_pad} with stride {strides[0]} and kernel {kh} (asymmetric padding)"
        pad = (kh - 1) // 2
    elif auto_pad == "VALID":
        pad = 0
    else:
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(set(pads)) != 1:
            return f"pads {pads} (winosim's geometry needs the same padding on every side)"
        pad = int(pads[0])
    kernel, stride = int(kh), int(strides[0])
    eligible = winograd_eligible(kernel, stride, pad, c)
    try:
        return LayerGeometry(
            name, "winograd" if eligible else "spatial", "conv", c, int(k), h, width, kernel, stride, pad
        )
    except ConfigError as exc:
        return str(exc)


def _fc_layer(name: str, inputs: int, outputs: int | None, a: tuple[int | None, ...] | None) -> LayerGeometry | str:
    if a is None or len(a) != 2 or outputs is None:
        return f"a fully connected layer on a {'?' if a is None else len(a)}-D input (winosim models (N, F) only)"
    return LayerGeometry(name, "spatial", "fc", inputs, int(outputs), 1, 1, kernel=1)


def onnx_geometry(
    path: str | Path, *, name: str | None = None, input_shape: Sequence[int] | None = None
) -> OnnxGeometry:
    """The conv and fc layers of the ONNX model at `path` (module docstring). `input_shape` (C, H, W) fixes a
    dynamic input size before shape inference; `name` defaults to the file's stem. OnnxError if the file is
    unreadable, its input is not a known-size image batch, or it has no supported layer."""
    onnx = _import_onnx()
    source = Path(path)
    model = _load(onnx, source, input_shape)
    graph = model.graph
    shapes: dict[str, tuple[int | None, ...] | None] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        shapes[value.name] = _dims(value.type)
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    constants = {t.name for t in graph.initializer}
    inputs = _graph_inputs(model)
    image = shapes.get(inputs[0].name) if len(inputs) == 1 else None
    if image is None or len(image) != 4 or None in image[1:]:
        raise OnnxError(
            f"{source}: needs one image input (N, C, H, W) of known C, H, W, got "
            f"{[shapes.get(i.name) for i in inputs]} (pass --input-shape C,H,W)"
        )
    layers: list[LayerGeometry] = []
    unsupported: list[str] = []
    used: set[str] = set()
    for index, node in enumerate(graph.node):
        op = node.op_type
        label = node.name or f"{op}_{index}"
        if label in used:
            label = f"{label}_{index}"
        if node.domain not in ("", "ai.onnx"):
            unsupported.append(f"{op} {label!r} (domain {node.domain}): not an operator winosim models; skipped")
            continue
        found: LayerGeometry | str | None = None
        attrs = _attributes(onnx, node)
        if op == "Conv":
            found = _conv_layer(label, attrs, shapes.get(node.input[0]), shapes.get(node.input[1]))
        elif op == "Gemm":
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if attrs.get("transA", 0) or b is None or len(b) != 2 or a is None or a[-1] is None:
                found = "a Gemm with a transposed or unknown-shape operand"
            else:
                outputs = b[0] if attrs.get("transB", 0) else b[1]
                found = _fc_layer(label, int(a[-1]), outputs, a)
        elif op == "MatMul" and node.input[1] in constants:
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if b is None or len(b) != 2 or a is None or a[-1] is None:
                found = "a MatMul whose constant operand is not a 2-D weight"
            else:
                found = _fc_layer(label, int(a[-1]), b[1], a)
        elif op in NO_MULTIPLY_OPS:
            continue
        if isinstance(found, LayerGeometry):
            layers.append(found)
            used.add(label)
        elif found is not None:
            unsupported.append(f"{op} {label!r}: {found}; skipped")
        else:
            unsupported.append(f"{op} {label!r}: not a convolution or fully connected layer winosim models; skipped")
    if not layers:
        raise OnnxError(f"{source}: no Conv, Gemm or MatMul layer winosim can model ({len(unsupported)} unsupported)")
    if not any(layer.kind == "winograd" for layer in layers):  # as a torch model's conversion refuses
        convs = "; ".join(
            f"{x.name} ({x.kernel}x{x.kernel}, stride {x.stride}, padding {x.padding}, {x.in_channels} inputs)"
            for x in layers
            if x.op == "conv"
        )
        raise OnnxError(
            f"{source}: no Winograd-eligible convolution (3x3, stride 1, padding 1, more than 3 input channels), "
            f"so every method would compute it alike; its modelled convolutions: {convs or 'none'}"
        )
    _, c, h, w = image
    assert c is not None and h is not None and w is not None
    geometry = NetworkGeometry(name or source.stem, int(h), int(w), layers[-1].out_channels, tuple(layers))
    return OnnxGeometry(geometry=geometry, unsupported=tuple(unsupported), source=str(source))
