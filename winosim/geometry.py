"""Layer geometry and the network geometries winosim knows.

A `LayerGeometry` is everything about a layer that does not depend on training: its shape, and whether
it runs as a Winograd F(2x2,3x3) layer (`kind="winograd"`) or spatially (`kind="spatial"`). Only a
stride-1, padding-1 3x3 convolution with more than 3 input channels may be a Winograd layer; the stem,
strided and 1x1 convolutions and fully connected layers are spatial in every method (paper.md section 3).

The network builders here are plain code that lists layers in execution order. The torch models under
`winosim.nn` use the same layer names, so a trace extracted from a model lines up with these geometries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from winosim.errors import ConfigError
from winosim.winograd import tile_grid

LayerKind = Literal["winograd", "spatial"]
LayerOp = Literal["conv", "fc"]

LAYER_KINDS: tuple[str, ...] = ("winograd", "spatial")
LAYER_OPS: tuple[str, ...] = ("conv", "fc")


def winograd_eligible(kernel: int, stride: int, padding: int, in_channels: int) -> bool:
    """Whether F(2x2,3x3) computes a (square, undilated, ungrouped) convolution of this shape exactly: 3x3,
    stride 1, padding 1 ('same'), more than 3 input channels (the RGB stem stays spatial, as in the paper).
    The one rule behind every layer's kind: the built-in networks, ONNX models and torch models."""
    return kernel == 3 and stride == 1 and padding == 1 and in_channels > 3


@dataclass(frozen=True)
class LayerGeometry:
    """One convolution or fully connected layer. An FC layer is a 1x1 convolution on a 1x1 map."""

    name: str
    kind: LayerKind
    op: LayerOp
    in_channels: int
    out_channels: int
    in_height: int
    in_width: int
    kernel: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"LayerGeometry: name must be a non-empty string, got {self.name!r}")
        where = f"LayerGeometry {self.name!r}"
        if self.kind not in LAYER_KINDS:
            raise ConfigError(f"{where}: kind must be one of {LAYER_KINDS}, got {self.kind!r}")
        if self.op not in LAYER_OPS:
            raise ConfigError(f"{where}: op must be one of {LAYER_OPS}, got {self.op!r}")
        for field in ("in_channels", "out_channels", "in_height", "in_width", "kernel", "stride"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}: {field} must be an integer >= 1, got {value!r}")
        if not isinstance(self.padding, int) or isinstance(self.padding, bool) or self.padding < 0:
            raise ConfigError(f"{where}: padding must be an integer >= 0, got {self.padding!r}")
        if self.op == "fc" and (self.kernel, self.in_height, self.in_width, self.stride, self.padding) != (
            1,
            1,
            1,
            1,
            0,
        ):
            raise ConfigError(f"{where}: an fc layer must have kernel 1, a 1x1 input, stride 1 and padding 0")
        if self.out_height < 1 or self.out_width < 1:
            raise ConfigError(f"{where}: kernel {self.kernel} does not fit a {self.in_height}x{self.in_width} input")
        if self.kind == "winograd" and not self.winograd_eligible:
            raise ConfigError(
                f"{where}: kind 'winograd' needs a 3x3, stride-1, padding-1 convolution with more than 3 input "
                f"channels, got kernel={self.kernel} stride={self.stride} padding={self.padding} "
                f"in_channels={self.in_channels}"
            )

    @property
    def out_height(self) -> int:
        return (self.in_height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.in_width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def winograd_eligible(self) -> bool:
        """Whether F(2x2,3x3) can compute this layer (`winograd_eligible` of its shape)."""
        return self.op == "conv" and winograd_eligible(self.kernel, self.stride, self.padding, self.in_channels)

    @property
    def tiles(self) -> tuple[int, int]:
        """F(2x2,3x3) tile grid (rows, columns) of the output: ceil(H/2), ceil(W/2)."""
        return tile_grid(self.out_height, self.out_width, 2)

    def dense_spatial_multiplies(self) -> int:
        """Multiplies of a direct convolution for one image: K*C*R*S per output pixel."""
        return self.out_channels * self.in_channels * self.kernel * self.kernel * self.out_height * self.out_width

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerGeometry:
        expected = set(cls.__dataclass_fields__)
        if not isinstance(data, dict):
            raise ConfigError(f"LayerGeometry: expected a mapping, got {type(data).__name__}")
        missing = expected - set(data)
        unknown = set(data) - expected
        if missing or unknown:
            raise ConfigError(
                f"LayerGeometry {data.get('name', '?')!r}: missing fields {sorted(missing)}, "
                f"unknown fields {sorted(unknown)}"
            )
        return cls(**data)


@dataclass(frozen=True)
class NetworkGeometry:
    """A named, ordered list of layers with unique names, and the input it expects."""

    name: str
    input_height: int
    input_width: int
    num_classes: int
    layers: tuple[LayerGeometry, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError(f"NetworkGeometry {self.name!r}: needs at least one layer")
        names = [layer.name for layer in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"NetworkGeometry {self.name!r}: duplicate layer names {duplicates}")

    def layer(self, name: str) -> LayerGeometry:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"NetworkGeometry {self.name!r}: no layer named {name!r}")


def _conv(
    name: str, c: int, k: int, size: int, kernel: int = 3, stride: int = 1, winograd: bool = True
) -> LayerGeometry:
    padding = kernel // 2
    eligible = kernel == 3 and stride == 1 and c > 3
    return LayerGeometry(
        name=name,
        kind="winograd" if (winograd and eligible) else "spatial",
        op="conv",
        in_channels=c,
        out_channels=k,
        in_height=size,
        in_width=size,
        kernel=kernel,
        stride=stride,
        padding=padding,
    )


def _fc(name: str, c: int, k: int) -> LayerGeometry:
    return LayerGeometry(
        name=name, kind="spatial", op="fc", in_channels=c, out_channels=k, in_height=1, in_width=1, kernel=1
    )


def _pool_out(size: int) -> int:
    """Output side of a 3x3 / stride-2 / padding-1 max-pool."""
    return (size + 2 - 3) // 2 + 1


def _resnet18_stages(first_size: int, pool_before_last: bool) -> tuple[list[LayerGeometry], int]:
    layers: list[LayerGeometry] = []
    size = first_size
    in_ch = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        if stage > 1 and (stage < 4 or pool_before_last):
            size = _pool_out(size)
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            layers.append(_conv(f"{prefix}.conv1", in_ch, width, size))
            layers.append(_conv(f"{prefix}.conv2", width, width, size))
            if in_ch != width:
                layers.append(_conv(f"{prefix}.shortcut", in_ch, width, size, kernel=1))
            in_ch = width
    return layers, size


def resnet18_imagenet(num_classes: int = 1000) -> NetworkGeometry:
    """The paper's ImageNet ResNet-18 (paper.md section 3): 7x7/2 stem, 3x3/2 max-pools for downsampling,
    every residual 3x3 convolution stride 1, last pool removed so stage 4 (the paper's conv5) runs at 14x14.
    About 3.05 G multiply-accumulates per 224x224 image."""
    stem = _conv("conv1", 3, 64, 224, kernel=7, stride=2)  # 224 -> 112
    after_pool = _pool_out(stem.out_height)  # 112 -> 56
    body, _ = _resnet18_stages(after_pool, pool_before_last=False)
    return NetworkGeometry("resnet18_imagenet", 224, 224, num_classes, (stem, *body, _fc("fc", 512, num_classes)))


def resnet18_cifar(num_classes: int = 10) -> NetworkGeometry:
    """ResNet-18 of the paper adapted to 32x32 inputs: a 3x3 stem (spatial), stage 1 at 32x32, 3x3/2
    max-pools before stages 2, 3 and 4 (16, 8, 4). Unlike the ImageNet variant the last pool is kept:
    at 32x32 there is no stem pool, so keeping it gives the usual 4x4 final map (about 0.56 G MACs)."""
    stem = _conv("conv1", 3, 64, 32)
    body, _ = _resnet18_stages(32, pool_before_last=True)
    return NetworkGeometry("resnet18_cifar", 32, 32, num_classes, (stem, *body, _fc("fc", 512, num_classes)))


def vgg_nagadomi(num_classes: int = 10) -> NetworkGeometry:
    """VGG-nagadomi for CIFAR-10 (paper.md section 4): 3x3 convolutions 64, 64, pool, 128, 128, pool,
    256 x4, pool, then FC 1024, 1024, num_classes. The first convolution (3 input channels) is spatial."""
    layers: list[LayerGeometry] = []
    size, in_ch, index = 32, 3, 1
    for group in ((64, 64), (128, 128), (256, 256, 256, 256)):
        for width in group:
            layers.append(_conv(f"conv{index}", in_ch, width, size))
            in_ch, index = width, index + 1
        size //= 2  # 2x2 max-pool
    flat = in_ch * size * size
    layers += [_fc("fc1", flat, 1024), _fc("fc2", 1024, 1024), _fc("fc3", 1024, num_classes)]
    return NetworkGeometry("vgg_nagadomi", 32, 32, num_classes, tuple(layers))


def convpool_cnn_c(num_classes: int = 100) -> NetworkGeometry:
    """ConvPool-CNN-C for CIFAR-100 (Springenberg et al. 2015; paper.md section 4): 3x3 convolutions 96 x3,
    3x3/2 max-pool, 192 x3, 3x3/2 max-pool, 3x3 192, 1x1 192, 1x1 num_classes, global average pool."""
    layers: list[LayerGeometry] = []
    size, in_ch, index = 32, 3, 1
    for group in ((96, 96, 96), (192, 192, 192)):
        for width in group:
            layers.append(_conv(f"conv{index}", in_ch, width, size))
            in_ch, index = width, index + 1
        size = _pool_out(size)
    layers.append(_conv(f"conv{index}", 192, 192, size))
    layers.append(_conv(f"conv{index + 1}", 192, 192, size, kernel=1))
    layers.append(_conv(f"conv{index + 2}", 192, num_classes, size, kernel=1))
    return NetworkGeometry("convpool_cnn_c", 32, 32, num_classes, tuple(layers))


NETWORKS: dict[str, Callable[[], NetworkGeometry]] = {
    "resnet18_imagenet": resnet18_imagenet,
    "resnet18_cifar": resnet18_cifar,
    "vgg_nagadomi": vgg_nagadomi,
    "convpool_cnn_c": convpool_cnn_c,
}


def network(name: str) -> NetworkGeometry:
    """Look up a known network geometry by name."""
    try:
        return NETWORKS[name]()
    except KeyError:
        raise ConfigError(f"unknown network {name!r}; known: {', '.join(sorted(NETWORKS))}") from None
