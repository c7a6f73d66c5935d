"""Networks: every geometry layer is a module of the same name and shape, in every method."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch

from winosim import geometry
from winosim.errors import ConfigError
from winosim.nn.layers import WinogradConv2d
from winosim.nn.models import build_model

CASES = [
    ("resnet18", geometry.resnet18_cifar(10), 32),
    ("vgg_nagadomi", geometry.vgg_nagadomi(10), 32),
    ("convpool_cnn_c", geometry.convpool_cnn_c(100), 32),
]


@pytest.mark.parametrize(("network", "geom", "size"), CASES)
@pytest.mark.parametrize("mode", ["spatial", "native", "winograd_relu"])
def test_layers_match_geometry_and_forward_runs(
    network: str, geom: geometry.NetworkGeometry, size: int, mode: str
) -> None:
    model = build_model(network, mode)
    assert model.geometry == geom
    assert [g.name for g, _ in model.layer_modules()] == [layer.name for layer in geom.layers]
    winograd = [g.name for g, _ in model.winograd_modules()]
    assert winograd == [layer.name for layer in geom.layers if layer.kind == "winograd"]
    assert all(isinstance(m, WinogradConv2d) and m.mode == mode for _, m in model.winograd_modules())
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, geom.num_classes)


def test_layer_inputs_have_geometry_shapes() -> None:
    """Each layer sees an input of its geometry's (C, H, W): the geometry is the network, not a description."""
    model = build_model("resnet18", "winograd_relu").eval()
    seen: dict[str, tuple[int, ...]] = {}
    for g, module in model.layer_modules():
        module.register_forward_pre_hook(lambda mod, args, name=g.name: seen.__setitem__(name, tuple(args[0].shape)))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    for layer in model.geometry.layers:
        expected = (
            (1, layer.in_channels) if layer.op == "fc" else (1, layer.in_channels, layer.in_height, layer.in_width)
        )
        assert seen[layer.name] == expected, layer.name


def test_resnet18_imagenet_geometry_option() -> None:
    model = build_model("resnet18_imagenet", "native", num_classes=10)
    assert model.geometry == geometry.resnet18_imagenet(10)
    assert len(model.winograd_modules()) == 16


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown network"):
        build_model("alexnet", "spatial")
    with pytest.raises(ConfigError, match="unknown method"):
        build_model("vgg_nagadomi", "winograd")
