"""The networks of the paper as torch modules, buildable in each of the three methods.

Every network carries its `winosim.geometry.NetworkGeometry` (`model.geometry`), and every geometry layer is a
submodule with exactly the geometry's name (`model.get_submodule("layer2.0.conv1")`), so masks extracted from
a model line up with the trace. Layers of kind "winograd" are `WinogradConv2d` modules in the network's mode
(spatial, native or winograd_relu); every other layer (the RGB stem, 1x1 projection shortcuts and
classifiers, FC layers) is an ordinary, unpruned `nn.Conv2d` / `nn.Linear`.

The ReLU in front of a Winograd layer belongs to that layer (it is where the methods differ), so the tensors
flowing between layers are *pre-activation*: batch-norm outputs. Max-pooling and dropout commute with ReLU,
so they act on the pre-activation stream without changing the spatial network. In a residual block the
identity / projection shortcut takes ReLU(x) explicitly while conv1 takes x and applies its own (spatial or
Winograd-domain) ReLU; for the spatial and native methods this is exactly the standard ResNet.

Deviations from the paper's networks are documented in docs/training.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from winosim import geometry
from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.nn.layers import MODES, Mode, WinogradConv2d

NETWORK_NAMES: tuple[str, ...] = ("resnet18", "resnet18_imagenet", "vgg_nagadomi", "convpool_cnn_c")
DEFAULT_CLASSES: dict[str, int] = {"resnet18": 10, "resnet18_imagenet": 1000, "vgg_nagadomi": 10, "convpool_cnn_c": 100}


def _pool3() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """ResNet basic block on the pre-activation stream: returns conv/bn path + shortcut(ReLU(x))."""

    def __init__(self, in_channels: int, out_channels: int, mode: Mode) -> None:
        super().__init__()
        self.conv1 = WinogradConv2d(in_channels, out_channels, mode)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = WinogradConv2d(out_channels, out_channels, mode)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Conv2d | None = None
        self.shortcut_bn: nn.BatchNorm2d | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        residual = torch.relu(x)
        if self.shortcut is not None and self.shortcut_bn is not None:
            residual = self.shortcut_bn(self.shortcut(residual))
        return out + residual


class WinoNet(nn.Module):
    """Base class: a network with a geometry and a method (mode)."""

    geometry: NetworkGeometry
    mode: Mode
    network_name: str

    def layer_modules(self) -> list[tuple[LayerGeometry, nn.Module]]:
        """(geometry layer, module) for every geometry layer, in execution order."""
        return [(layer, self.get_submodule(layer.name)) for layer in self.geometry.layers]

    def winograd_modules(self) -> list[tuple[LayerGeometry, WinogradConv2d]]:
        """The prunable layers (geometry kind "winograd"), in execution order."""
        out = []
        for layer, module in self.layer_modules():
            if layer.kind == "winograd":
                assert isinstance(module, WinogradConv2d)
                out.append((layer, module))
        return out

    def _check_geometry(self) -> None:
        for layer, module in self.layer_modules():
            if layer.kind == "winograd":
                ok = isinstance(module, WinogradConv2d) and (module.in_channels, module.out_channels) == (
                    layer.in_channels,
                    layer.out_channels,
                )
            elif layer.op == "fc":
                ok = isinstance(module, nn.Linear) and (module.in_features, module.out_features) == (
                    layer.in_channels,
                    layer.out_channels,
                )
            else:
                ok = isinstance(module, nn.Conv2d) and (
                    module.in_channels,
                    module.out_channels,
                    module.kernel_size,
                    module.stride,
                    module.padding,
                ) == (
                    layer.in_channels,
                    layer.out_channels,
                    (layer.kernel, layer.kernel),
                    (layer.stride, layer.stride),
                    (layer.padding, layer.padding),
                )
            if not ok:
                raise ConfigError(f"{self.network_name}: module {layer.name!r} disagrees with the geometry {layer}")


class ResNet18(WinoNet):
    """The paper's ResNet-18 (paper.md section 3). `imagenet=False`: the 32x32 adaptation (3x3 stem, pools
    before stages 2-4, geometry `resnet18_cifar`); `imagenet=True`: 224x224, 7x7/2 stem + pool, last pool
    removed (geometry `resnet18_imagenet`)."""

    def __init__(self, mode: Mode, num_classes: int = 10, imagenet: bool = False) -> None:
        super().__init__()
        self.mode = mode
        self.imagenet = imagenet
        self.network_name = "resnet18_imagenet" if imagenet else "resnet18"
        self.geometry = geometry.resnet18_imagenet(num_classes) if imagenet else geometry.resnet18_cifar(num_classes)
        if imagenet:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stem_pool: nn.Module = _pool3() if imagenet else nn.Identity()
        in_ch = 64
        self.pools = nn.ModuleList()
        for stage, width in enumerate((64, 128, 256, 512), start=1):
            pool = stage > 1 and (stage < 4 or not imagenet)
            self.pools.append(_pool3() if pool else nn.Identity())
            self.add_module(
                f"layer{stage}", nn.Sequential(BasicBlock(in_ch, width, mode), BasicBlock(width, width, mode))
            )
            in_ch = width
        self.fc = nn.Linear(512, num_classes)
        self._check_geometry()

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem_pool(self.bn1(self.conv1(x)))
        for stage in range(4):
            x = self.get_submodule(f"layer{stage + 1}")(self.pools[stage](x))
        x = torch.flatten(torch.mean(torch.relu(x), dim=(2, 3)), 1)
        return self.fc(x)


class VGGNagadomi(WinoNet):
    """VGG-nagadomi for CIFAR-10 (paper.md section 4) with batch norm after every convolution and the two
    hidden FC layers; dropout 0.25 after the pools and 0.5 in the FC layers when `dropout` is set."""

    def __init__(self, mode: Mode, num_classes: int = 10, dropout: bool = True) -> None:
        super().__init__()
        self.mode = mode
        self.network_name = "vgg_nagadomi"
        self.geometry = geometry.vgg_nagadomi(num_classes)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1, bias=False)
        self.bn_conv1 = nn.BatchNorm2d(64)
        in_ch, index = 64, 2
        self.groups: list[list[int]] = [[1, 2], [3, 4], [5, 6, 7, 8]]
        for width in (64, 128, 128, 256, 256, 256, 256):
            self.add_module(f"conv{index}", WinogradConv2d(in_ch, width, mode))
            self.add_module(f"bn_conv{index}", nn.BatchNorm2d(width))
            in_ch, index = width, index + 1
        self.pool = nn.MaxPool2d(2)
        self.drop_conv = nn.Dropout(0.25 if dropout else 0.0)
        self.drop_fc = nn.Dropout(0.5 if dropout else 0.0)
        self.fc1 = nn.Linear(256 * 4 * 4, 1024)
        self.bn_fc1 = nn.BatchNorm1d(1024)
        self.fc2 = nn.Linear(1024, 1024)
        self.bn_fc2 = nn.BatchNorm1d(1024)
        self.fc3 = nn.Linear(1024, num_classes)
        self._check_geometry()

    def forward(self, x: Tensor) -> Tensor:
        for group in self.groups:
            for index in group:
                x = self.get_submodule(f"bn_conv{index}")(self.get_submodule(f"conv{index}")(x))
            x = self.drop_conv(self.pool(x))
        x = torch.flatten(torch.relu(x), 1)
        x = self.drop_fc(torch.relu(self.bn_fc1(self.fc1(x))))
        x = self.drop_fc(torch.relu(self.bn_fc2(self.fc2(x))))
        return self.fc3(x)


class ConvPoolCNNC(WinoNet):
    """ConvPool-CNN-C for CIFAR-100 (Springenberg et al. 2015, paper.md section 4) with batch norm after every
    convolution, dropout 0.5 after the two pools when `dropout` is set; the last 1x1 convolution's batch-norm
    output is averaged globally into the logits."""

    def __init__(self, mode: Mode, num_classes: int = 100, dropout: bool = True) -> None:
        super().__init__()
        self.mode = mode
        self.network_name = "convpool_cnn_c"
        self.geometry = geometry.convpool_cnn_c(num_classes)
        self.conv1 = nn.Conv2d(3, 96, kernel_size=3, padding=1, bias=False)
        widths = (96, 96, 192, 192, 192, 192)
        in_ch = 96
        for index, width in enumerate(widths, start=2):
            self.add_module(f"conv{index}", WinogradConv2d(in_ch, width, mode))
            in_ch = width
        self.conv8 = nn.Conv2d(192, 192, kernel_size=1, bias=False)
        self.conv9 = nn.Conv2d(192, num_classes, kernel_size=1, bias=False)
        self.bns = nn.ModuleList(nn.BatchNorm2d(w) for w in (96, *widths, 192, num_classes))
        self.pool = _pool3()
        self.drop = nn.Dropout(0.5 if dropout else 0.0)
        self._check_geometry()

    def forward(self, x: Tensor) -> Tensor:
        for index in range(1, 8):
            x = self.bns[index - 1](self.get_submodule(f"conv{index}")(x))
            if index in (3, 6):
                x = self.drop(self.pool(x))
        x = self.bns[7](self.conv8(torch.relu(x)))
        x = self.bns[8](self.conv9(torch.relu(x)))
        return torch.mean(x, dim=(2, 3))


_BUILDERS: dict[str, Callable[[Mode, int, bool], WinoNet]] = {
    "resnet18": lambda mode, classes, dropout: ResNet18(mode, classes, imagenet=False),
    "resnet18_imagenet": lambda mode, classes, dropout: ResNet18(mode, classes, imagenet=True),
    "vgg_nagadomi": lambda mode, classes, dropout: VGGNagadomi(mode, classes, dropout),
    "convpool_cnn_c": lambda mode, classes, dropout: ConvPoolCNNC(mode, classes, dropout),
}


def build_model(network: str, mode: str, num_classes: int | None = None, *, dropout: bool = True) -> WinoNet:
    """Build `network` (one of NETWORK_NAMES) in `mode` (spatial, native, winograd_relu)."""
    if network not in _BUILDERS:
        raise ConfigError(f"unknown network {network!r}; known: {', '.join(NETWORK_NAMES)}")
    if mode not in MODES:
        raise ConfigError(f"unknown method {mode!r}; known: {', '.join(MODES)}")
    classes = DEFAULT_CLASSES[network] if num_classes is None else num_classes
    if classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {classes}")
    return _BUILDERS[network](mode, classes, dropout)  # type: ignore[arg-type]
