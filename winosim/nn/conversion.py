"""Conversion of any PyTorch CNN to Winograd-domain layers: `winosim.nn.convert(model, method)`.

The paper's method applies to every 3x3 stride-1 convolution, and a `WinogradConv2d` includes the ReLU of
its input (that ReLU's position is what distinguishes the methods). Converting an arbitrary model therefore
rewrites its graph with torch.fx:

1. Every *eligible* `nn.Conv2d` (3x3, stride 1, padding 1, dilation 1, groups 1, zero padding, more than 3
   input channels, called once per forward pass) becomes a `ConvertedConv2d` (a `WinogradConv2d` with the
   conv's bias) in the chosen method, under the same module path.
2. The ReLU in front of it (looking through max-pooling, identity and non-in-place dropout, which commute
   with ReLU) is taken into the layer: the layer reads the ReLU's *input*. If the ReLU had no other
   consumer it disappears from the graph ("moved"); if its output also feeds something else (a residual
   shortcut, a concatenation, a pooling head) that consumer keeps its spatial ReLU ("kept"). For `spatial`
   and `native` the layer's own spatial ReLU replaces the removed one exactly; for `winograd_relu` the ReLU
   now runs in the Winograd domain, after the input transform.
3. An eligible convolution with no ReLU in front ("none": after a batch norm without activation, on an
   input with more than 3 channels, after an addition) is converted *without* an input ReLU: spatial
   and native compute exactly the original convolution, and winograd_relu multiplies the dense transformed
   input (there is no ReLU to move). Such layers are still pruned in the Winograd domain.

So a converted `spatial` or `native` model computes the same function as the original (to rounding; the
tests check 1e-5 in float64 on VGG-11, ResNet-18, ResNet-34 and a custom residual CNN), while a
`winograd_relu` model is the paper's architecture. With `init="spatial"` (default) the converted layers
start from the original weights (U = G g G^T for the Winograd methods); with `init="fresh"` they keep
`WinogradConv2d`'s initialisation (the paper's variance scaling for Winograd-domain weights). Biases are
always copied.

The result is a `ConvertedModel`: an fx `GraphModule` whose submodules keep the original module paths (so
its state_dict keys are the original ones) and a `winosim.nn.models.WinoNet` (pruning, training and trace
extraction work on it unchanged). Given `input_shape`, it carries a `winosim.geometry.NetworkGeometry` of
its convolution and linear layers in execution order, named by module path (`model_geometry`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry, NetworkGeometry, winograd_eligible
from winosim.nn.layers import MODES, Mode, WinogradConv2d, input_transform, spatial_to_winograd
from winosim.nn.models import WinoNet
from winosim.text import described

Init = Literal["spatial", "fresh"]
INITS: tuple[str, ...] = ("spatial", "fresh")
ReluStatus = Literal["moved", "kept", "none"]

_RELU_FUNCTIONS: dict[Any, bool] = {torch.relu: False, F.relu: False, torch.relu_: True, F.relu_: True}
_RELU_METHODS: dict[str, bool] = {"relu": False, "relu_": True}
_POOL_FUNCTIONS: tuple[Any, ...] = (F.max_pool2d, torch.max_pool2d)


class ConversionError(ConfigError):
    """A model that cannot be converted or described: untraceable by fx, no eligible layer, or a layer
    winosim's geometry cannot represent."""


def conv_eligible(conv: nn.Conv2d) -> bool:
    """Whether F(2x2,3x3) computes `conv` exactly: a square, undilated, ungrouped, zero-padded convolution whose
    shape `geometry.winograd_eligible` accepts (3x3, stride 1, padding 1 or 'same', more than 3 inputs)."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if conv.padding == "same":
        padding = (kh - 1) // 2
    elif conv.padding == "valid":
        padding = 0
    elif isinstance(conv.padding, tuple) and len(set(conv.padding)) == 1:
        padding = int(conv.padding[0])
    else:
        return False
    return (
        kh == kw
        and sh == sw
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and winograd_eligible(kh, sh, padding, conv.in_channels)
    )


def _ineligible_reason(conv: nn.Conv2d) -> str:
    if conv.in_channels <= 3:
        return f"{conv.in_channels} input channels"
    parts = []
    if conv.kernel_size != (3, 3):
        parts.append(f"kernel {conv.kernel_size}")
    if conv.stride != (1, 1):
        parts.append(f"stride {conv.stride}")
    if conv.padding not in ((1, 1), "same"):
        parts.append(f"padding {conv.padding}")
    if conv.dilation != (1, 1):
        parts.append(f"dilation {conv.dilation}")
    if conv.groups != 1:
        parts.append(f"groups {conv.groups}")
    if conv.padding_mode != "zeros":
        parts.append(f"padding mode {conv.padding_mode}")
    return ", ".join(parts)


class ConvertedConv2d(WinogradConv2d):
    """A `WinogradConv2d` standing in for an `nn.Conv2d`: optional bias (K,), and `input_relu=False` for a
    convolution that had no ReLU in front (then no mode applies a ReLU: spatial is conv2d(x, g), native and
    winograd_relu multiply the dense B^T x B)."""

    bias: nn.Parameter | None

    def __init__(self, in_channels: int, out_channels: int, mode: Mode, *, bias: bool, input_relu: bool) -> None:
        super().__init__(in_channels, out_channels, mode)
        self.input_relu = input_relu
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias is not None}, input_relu={self.input_relu}"

    def spatial_activation(self, x: Tensor) -> Tensor:
        """The spatial map a `spatial` layer multiplies: ReLU(x), or x without an input ReLU."""
        return torch.relu(x) if self.input_relu else x

    def winograd_activation(self, x: Tensor) -> Tensor:
        if self.input_relu or self.mode == "spatial":
            return super().winograd_activation(x)
        return input_transform(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_relu:
            y = super().forward(x)
        elif self.mode == "spatial":
            y = F.conv2d(x, self.masked_weight(), padding=1)
        else:
            # dense V: no ReLU to sparsify it
            y = self.winograd_layer(x)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y


@dataclass(frozen=True)
class ConvertedLayer:
    """One converted convolution: its module path, channels, and what happened to the ReLU in front of it
    ("moved" into the layer, "kept" spatially for another consumer too, or "none" in front)."""

    name: str
    in_channels: int
    out_channels: int
    relu: ReluStatus

    def __post_init__(self) -> None:
        if self.relu not in ("moved", "kept", "none"):
            raise ConfigError(f"ConvertedLayer {self.name!r}: relu must be moved, kept or none, got {self.relu!r}")


@dataclass(frozen=True)
class SkippedLayer:
    """A convolution left as it is, and why."""

    name: str
    reason: str


class ConvertedModel(WinoNet, fx.GraphModule):
    """A converted model (module docstring): an fx GraphModule with the original module paths, and a WinoNet.

    Attributes: `mode` (the method), `network_name`, `converted` (one `ConvertedLayer` per converted
    convolution, in graph order), `skipped` (convolutions left spatial) and `input_shape` ((C, H, W) or None).
    `geometry` needs `input_shape`.
    """

    converted: tuple[ConvertedLayer, ...]
    skipped: tuple[SkippedLayer, ...]
    input_shape: tuple[int, ...] | None
    _geometry: NetworkGeometry | None

    @property
    def geometry(self) -> NetworkGeometry:
        if self._geometry is None:
            raise ConversionError(
                f"{self.network_name}: no geometry without an input shape; convert with input_shape=(C, H, W)"
            )
        return self._geometry

    @geometry.setter
    def geometry(self, value: NetworkGeometry) -> None:
        self._geometry = value

    def __deepcopy__(self, memo: dict[int, Any]) -> ConvertedModel:
        result = cast(ConvertedModel, super().__deepcopy__(memo))
        for name in ("mode", "network_name", "converted", "skipped", "input_shape", "_geometry"):
            object.__setattr__(result, name, copy.deepcopy(getattr(self, name), memo))
        return result

    def summary(self) -> str:
        """One line per converted or skipped convolution (what `winosim train --model` logs)."""
        lines = [
            f"{layer.name}: {layer.in_channels}->{layer.out_channels} {self.mode}, input ReLU {layer.relu}"
            for layer in self.converted
        ]
        lines += [f"{layer.name}: left spatial ({layer.reason})" for layer in self.skipped]
        return "\n".join(lines)


# --------------------------------------------------------------------------- graph analysis


def _relu_kind(gm: fx.GraphModule, node: fx.Node) -> bool | None:
    """None if `node` is not a ReLU, else whether it works in place."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return module.inplace if type(module) is nn.ReLU else None
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        inplace = bool(node.kwargs.get("inplace", node.args[1] if len(node.args) > 1 else False))
        return _RELU_FUNCTIONS[node.target] or inplace
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return _RELU_METHODS[str(node.target)]
    return None


def _commutes_with_relu(gm: fx.GraphModule, node: fx.Node, absorbing: set[fx.Node]) -> bool:
    """Whether `node` is a single-input op f with f(ReLU(x)) = ReLU(f(x)) that may be recomputed on the
    pre-ReLU input: max-pooling, identity, and dropout that is not in place and feeds only convolutions
    that absorb the ReLU (so that one dropout draw serves every consumer)."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, nn.MaxPool2d | nn.Identity):
            return True
        if isinstance(module, nn.Dropout | nn.Dropout2d):
            return not module.inplace and all(user in absorbing for user in node.users)
        return False
    return node.op == "call_function" and node.target in _POOL_FUNCTIONS


# what `_Rewriter.pre_relu` finds before a convolution: (the node computing the convolution's input without the
# ReLU, the ReLU, the look-through nodes passed between them), or None where no movable ReLU is there
_Hit = tuple[fx.Node, fx.Node, list[fx.Node]] | None


class _Rewriter:
    """Rewires the input of each absorbing convolution from a ReLU('s look-through chain) to its input."""

    def __init__(self, gm: fx.GraphModule, absorbing: set[fx.Node]) -> None:
        self.gm = gm
        self.absorbing = absorbing
        self.clones: dict[fx.Node, fx.Node] = {}

    def pre_relu(self, node: fx.Node) -> _Hit:
        """(node computing `node` without the ReLU, the ReLU node, the look-through nodes passed) or None."""
        inplace = _relu_kind(self.gm, node)
        if inplace is not None:
            source = node.args[0]
            if not isinstance(source, fx.Node) or (inplace and len(source.users) > 1):
                return None  # an in-place ReLU whose input is read elsewhere: not movable
            return source, node, []
        if not _commutes_with_relu(self.gm, node, self.absorbing):
            return None
        found = self.pre_relu(node.args[0])  # type: ignore[arg-type]
        if found is None:
            return None
        source, relu, chain = found
        if node not in self.clones:
            with self.gm.graph.inserting_after(node):
                self.clones[node] = self.gm.graph.create_node(
                    node.op, node.target, (source, *node.args[1:]), dict(node.kwargs)
                )
        return self.clones[node], relu, [*chain, node]


def _non_inplace_relu(graph: fx.Graph, relu: fx.Node) -> None:
    """Replace an in-place ReLU that stays in the graph by `torch.relu` (its input now has other readers)."""
    with graph.inserting_after(relu):
        plain = graph.call_function(torch.relu, (relu.args[0],))
    relu.replace_all_uses_with(plain)
    graph.erase_node(relu)


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _trace(model: nn.Module, label: str) -> fx.GraphModule:
    """A torch.fx trace of a copy of `model`; ConversionError where fx cannot trace it."""
    try:
        return fx.symbolic_trace(copy.deepcopy(model))
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError, ...)
        raise ConversionError(
            f"{label}: torch.fx cannot trace the model ({described(exc)}); its forward must not branch on "
            "tensor values (move such code into a submodule that holds no eligible convolution)"
        ) from None


def _find_convolutions(gm: fx.GraphModule, label: str) -> tuple[list[fx.Node], dict[str, SkippedLayer]]:
    """The calls of Winograd-eligible convolutions, in graph order, and every other nn.Conv2d with the reason it
    stays as it is; ConversionError where no convolution is eligible."""
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    eligible: list[fx.Node] = []
    skipped: dict[str, SkippedLayer] = {}
    for node in gm.graph.nodes:
        path = str(node.target)
        module = gm.get_submodule(path) if node.op == "call_module" else None
        if not isinstance(module, nn.Conv2d) or path in skipped:
            continue
        if not conv_eligible(module):
            skipped[path] = SkippedLayer(path, _ineligible_reason(module))
        elif calls[path] > 1:
            skipped[path] = SkippedLayer(path, f"called {calls[path]} times per forward")
        elif len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            skipped[path] = SkippedLayer(path, "called with more than one input")
        else:
            eligible.append(node)
    if not eligible:
        listed = "; ".join(f"{s.name} ({s.reason})" for s in list(skipped.values())[:6]) or "none found"
        raise ConversionError(
            f"{label}: no Winograd-eligible nn.Conv2d (3x3, stride 1, padding 1, dilation 1, groups 1, more than "
            f"3 input channels); its convolutions: {listed}"
        )
    return eligible, skipped


def _move_input_relus(gm: fx.GraphModule, eligible: list[fx.Node]) -> tuple[dict[fx.Node, _Hit], set[fx.Node]]:
    """Rewire each eligible convolution whose input is ReLU(t) to read t (the layer applies its own ReLU in its
    multiply domain), erase the chains no one else reads, and make the ReLUs other consumers still read
    out of place. Returns each convolution's hit (None: no ReLU before it) and the ReLUs that stay in the graph
    (in-place ones among them replaced by `torch.relu`, so the set names the nodes as found)."""
    graph = gm.graph
    rewriter = _Rewriter(gm, set(eligible))
    found = {conv: rewriter.pre_relu(conv.args[0]) for conv in eligible}  # type: ignore[arg-type]
    for conv, hit in found.items():
        if hit is not None:
            conv.args = (hit[0],)
    passed = {node for hit in found.values() if hit is not None for node in (hit[1], *hit[2])}
    for node in reversed(list(graph.nodes)):  # consumers first, so that a chain dies as a whole
        if node in passed and not node.users:
            graph.erase_node(node)
    relus = {hit[1] for hit in found.values() if hit is not None}
    kept = [node for node in graph.nodes if node in relus]  # graph order: deterministic node names
    for relu in kept:
        if _relu_kind(gm, relu):
            _non_inplace_relu(graph, relu)
    return found, set(kept)


def _swap_convolutions(
    gm: fx.GraphModule, found: dict[fx.Node, _Hit], kept: set[fx.Node], method: str, init: str
) -> list[ConvertedLayer]:
    """Replace each eligible nn.Conv2d by a ConvertedConv2d of `method` (weights per `init`), in graph order."""
    converted: list[ConvertedLayer] = []
    for conv, hit in found.items():
        path = str(conv.target)
        old = gm.get_submodule(path)
        assert isinstance(old, nn.Conv2d)
        status: ReluStatus = "none" if hit is None else ("kept" if hit[1] in kept else "moved")
        new = ConvertedConv2d(
            old.in_channels,
            old.out_channels,
            method,  # type: ignore[arg-type]
            bias=old.bias is not None,
            input_relu=hit is not None,
        ).to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            if init == "spatial":
                new.weight.copy_(old.weight if method == "spatial" else spatial_to_winograd(old.weight))
            if old.bias is not None and new.bias is not None:
                new.bias.copy_(old.bias)
        new.train(old.training)
        _set_submodule(gm, path, new)
        converted.append(ConvertedLayer(path, old.in_channels, old.out_channels, status))
    return converted


def convert(
    model: nn.Module,
    method: str,
    *,
    init: str = "spatial",
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
) -> ConvertedModel:
    """A converted copy of `model` (module docstring); `model` itself is not changed.

    method: spatial, native or winograd_relu. init: "spatial" (start from the model's weights, U = G g G^T)
    or "fresh" (WinogradConv2d's own initialisation). input_shape: (C, H, W) of one input, for `geometry`.
    name: the network name (default: the model's class name). Raises ConversionError for a model fx cannot
    trace or one without an eligible convolution.
    """
    if method not in MODES:
        raise ConfigError(f"convert: method must be one of {MODES}, got {method!r}")
    if init not in INITS:
        raise ConfigError(f"convert: init must be one of {INITS}, got {init!r}")
    label = name or type(model).__name__
    gm = _trace(model, label)
    eligible, skipped = _find_convolutions(gm, label)
    found, kept = _move_input_relus(gm, eligible)
    converted = _swap_convolutions(gm, found, kept, method, init)
    graph = gm.graph
    graph.lint()
    gm.recompile()

    result = ConvertedModel(gm, graph, class_name=type(model).__name__)
    result.mode = method  # type: ignore[assignment]
    result.network_name = label
    result.converted = tuple(converted)
    result.skipped = tuple(skipped.values())
    result.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
    result._geometry = None
    result.train(model.training)
    if result.input_shape is not None:
        result._geometry = model_geometry(
            result, result.input_shape, label, winograd=lambda m: isinstance(m, ConvertedConv2d)
        )
    return result


# --------------------------------------------------------------------------- geometry


def _square(value: Any, what: str, name: str, problems: list[str]) -> int:
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if pair[0] != pair[1]:
        problems.append(f"{name} ({what} {pair})")
    return int(pair[0])


def _conv_padding(conv: nn.Conv2d) -> Any:
    if conv.padding == "valid":
        return 0
    if conv.padding == "same":
        return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size, strict=True))
    return conv.padding


@torch.no_grad()
def model_geometry(
    model: nn.Module, input_shape: Sequence[int], name: str, winograd: Callable[[nn.Module], bool]
) -> NetworkGeometry:
    """The geometry of `model`'s nn.Conv2d, WinogradConv2d and nn.Linear layers in execution order, named by
    module path, measured by one eval-mode forward pass of a zero image of `input_shape` (C, H, W).
    `winograd(module)` says which layers are of kind "winograd". Every layer must run once per forward pass
    and be representable (square kernel, stride and padding; dilation 1; groups 1; a Linear on (N, F))."""
    if len(input_shape) != 3 or any(d < 1 for d in input_shape):
        raise ConfigError(f"{name}: input_shape must be (C, H, W) with positive sides, got {tuple(input_shape)}")
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    calls: dict[str, int] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], path: str) -> None:
        calls[path] = calls.get(path, 0) + 1
        if calls[path] == 1:
            seen.append((path, module, tuple(args[0].shape)))

    handles = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear | WinogradConv2d):
            handles.append(module.register_forward_pre_hook(lambda m, a, p=path: hook(m, a, p)))
    modes = {m: m.training for m in model.modules()}
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        model.eval()
        output = model(torch.zeros((1, *input_shape), dtype=dtype, device=device))
    except Exception as exc:
        raise ConversionError(
            f"{name}: a forward pass on a {tuple(input_shape)} input fails ({described(exc)})"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.train(training)
    problems = [f"{path} (runs {count} times per forward)" for path, count in calls.items() if count > 1]
    layers: list[LayerGeometry] = []
    for path, module, shape in seen:
        if isinstance(module, nn.Linear):
            if len(shape) != 2:
                problems.append(f"{path} (a Linear on a {len(shape)}-D input)")
                continue
            layers.append(LayerGeometry(path, "spatial", "fc", module.in_features, module.out_features, 1, 1, kernel=1))
            continue
        if isinstance(module, WinogradConv2d):
            kernel, stride, padding, cin, cout = 3, 1, 1, module.in_channels, module.out_channels
        else:
            assert isinstance(module, nn.Conv2d)
            kernel = _square(module.kernel_size, "kernel", path, problems)
            stride = _square(module.stride, "stride", path, problems)
            padding = _square(_conv_padding(module), "padding", path, problems)
            if module.dilation != (1, 1):
                problems.append(f"{path} (dilation {module.dilation})")
            if module.groups != 1:
                problems.append(f"{path} (groups {module.groups})")
            cin, cout = module.in_channels, module.out_channels
        layers.append(
            LayerGeometry(
                path,
                "winograd" if winograd(module) else "spatial",
                "conv",
                cin,
                cout,
                shape[-2],
                shape[-1],
                kernel=kernel,
                stride=stride,
                padding=padding,
            )
        )
    if problems:
        raise ConversionError(f"{name}: layers a winosim geometry cannot represent: {'; '.join(problems[:8])}")
    if not layers:
        raise ConversionError(f"{name}: no nn.Conv2d or nn.Linear layer runs in the forward pass")
    classes = int(output.shape[-1]) if isinstance(output, Tensor) and output.ndim == 2 else layers[-1].out_channels
    return NetworkGeometry(name, int(input_shape[1]), int(input_shape[2]), classes, tuple(layers))


__all__ = [
    "INITS",
    "ConversionError",
    "ConvertedConv2d",
    "ConvertedLayer",
    "ConvertedModel",
    "SkippedLayer",
    "conv_eligible",
    "convert",
    "model_geometry",
]
