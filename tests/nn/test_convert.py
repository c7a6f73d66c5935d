"""Conversion of any CNN (`winosim.nn.convert`): a converted spatial or native model computes the original
model's function (1e-5 in float64, on torchvision-style VGG-11, ResNet-18, ResNet-34 and a small custom residual
CNN); each ReLU in front of a Winograd layer is moved into it, or kept where another consumer reads it; the
geometry is the model's conv and linear layers in execution order, with torchvision's published multiply-adds."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

pytest.importorskip("torch")
import torch
from torch import Tensor, nn

from examples.models import SmallResidualCNN, resnet18, resnet34, small_residual_cnn, vgg11
from winosim.nn import convert
from winosim.nn.conversion import ConversionError, ConvertedConv2d, ConvertedModel, conv_eligible
from winosim.nn.layers import spatial_to_winograd, winograd_init_std
from winosim.nn.prune import network_density, prune_network

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "small_residual_cnn": lambda: small_residual_cnn(num_classes=10),
    "vgg11": lambda: vgg11(num_classes=10, hidden=64),
    "vgg11_bn": lambda: vgg11(num_classes=10, batch_norm=True, hidden=64),
    "resnet18": lambda: resnet18(num_classes=10),
    "resnet34": lambda: resnet34(num_classes=10),
}


def _nontrivial(model: nn.Module) -> nn.Module:
    """float64, eval mode, batch norms with random statistics and affine parameters (so that a ReLU's input has
    both signs), Linear layers scaled to unit gain (torchvision's VGG init makes outputs ~1e-3, which would make
    a 1e-5 check weak)."""
    generator = torch.Generator().manual_seed(0)
    model = model.double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.5, 0.5, generator=generator)
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features), generator=generator)
    return model


@pytest.fixture(scope="module")
def inputs() -> Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_converted_spatial_and_native_compute_the_original_model(architecture: str, inputs: Tensor) -> None:
    torch.manual_seed(0)
    original = _nontrivial(ARCHITECTURES[architecture]())
    with torch.no_grad():
        reference = original(inputs)
    assert reference.abs().max() > 0.1  # a meaningful scale for an absolute tolerance
    for method in ("spatial", "native"):
        converted = convert(original, method)
        assert all(isinstance(converted.get_submodule(c.name), ConvertedConv2d) for c in converted.converted)
        with torch.no_grad():
            error = float((converted(inputs) - reference).abs().max())
        assert error <= 1e-5, (architecture, method, error)


def test_relu_moved_kept_or_absent_in_the_small_residual_cnn() -> None:
    converted = convert(small_residual_cnn(), "winograd_relu")
    relu = {layer.name: layer.relu for layer in converted.converted}
    # conv_a's input ReLU also feeds the shortcut; conv_c's reaches it through a max-pool; conv_d has none.
    assert relu == {"conv_a": "kept", "conv_b": "moved", "conv_c": "moved", "conv_d": "none"}
    assert {s.name: s.reason for s in converted.skipped} == {"stem": "3 input channels", "down": "stride (2, 2)"}
    conv_a = converted.get_submodule("conv_a")
    assert isinstance(conv_a, ConvertedConv2d) and conv_a.bias is not None and conv_a.input_relu
    assert not converted.get_submodule("conv_d").input_relu


def test_resnet_shortcuts_keep_their_relu() -> None:
    converted = convert(resnet18(), "winograd_relu")
    relu = {layer.name: layer.relu for layer in converted.converted}
    # Stage entry convolutions with stride 2 stay spatial; every other conv1 shares its ReLU with the identity
    # shortcut, every conv2 owns the ReLU after bn1.
    assert relu["layer1.0.conv1"] == "kept" and relu["layer3.1.conv1"] == "kept"
    assert all(status == "moved" for name, status in relu.items() if name.endswith("conv2"))
    assert len(relu) == 13 and "layer2.0.conv1" in {s.name for s in converted.skipped}
    # The shortcut still adds a (non-in-place) spatial ReLU of the block input.
    assert "torch.relu(" in converted.code


@pytest.mark.parametrize("architecture", ["small_residual_cnn", "resnet18"])
def test_converted_layers_read_the_pre_relu_tensor(architecture: str, inputs: Tensor) -> None:
    """Oracle for the rewrite: in the native model each converted layer with a moved/kept ReLU reads a tensor
    with negative entries whose ReLU is exactly what the original convolution read; one without reads the
    original input unchanged. winograd_relu has the same graph, only the layers' mode differs."""
    torch.manual_seed(0)
    original = _nontrivial(ARCHITECTURES[architecture]())
    native = convert(original, "native")
    seen: dict[str, dict[str, Tensor]] = {"original": {}, "native": {}}
    handles = []
    for key, model in (("original", original), ("native", native)):
        for layer in native.converted:

            def hook(module: nn.Module, args: tuple[Tensor, ...], key: str = key, name: str = layer.name) -> None:
                seen[key][name] = args[0].detach()

            handles.append(model.get_submodule(layer.name).register_forward_pre_hook(hook))
    with torch.no_grad():
        original(inputs), native(inputs)
    for handle in handles:
        handle.remove()
    for layer in native.converted:
        read, before = seen["native"][layer.name], seen["original"][layer.name]
        if layer.relu == "none":
            torch.testing.assert_close(read, before, rtol=0, atol=1e-12)
        else:
            assert (read < 0).any(), layer.name
            torch.testing.assert_close(torch.relu(read), before, rtol=0, atol=1e-12)
    assert convert(original, "winograd_relu").code == native.code


def test_initialisation_from_spatial_weights_or_fresh() -> None:
    torch.manual_seed(0)
    model = small_residual_cnn()
    spatial_init = convert(model, "winograd_relu")
    layer = spatial_init.get_submodule("conv_a")
    assert isinstance(layer, ConvertedConv2d)
    torch.testing.assert_close(layer.weight, spatial_to_winograd(model.conv_a.weight), rtol=0, atol=0)
    torch.testing.assert_close(layer.bias, model.conv_a.bias, rtol=0, atol=0)
    fresh = convert(model, "winograd_relu", init="fresh").get_submodule("conv_c")
    assert isinstance(fresh, ConvertedConv2d)
    assert float(fresh.weight.detach().std()) == pytest.approx(winograd_init_std(16), rel=0.1)
    # The original model is not touched.
    assert isinstance(model.conv_a, nn.Conv2d) and not isinstance(model.conv_a, ConvertedConv2d)


def test_geometry_names_order_and_torchvision_multiply_adds() -> None:
    """Geometry from a forward pass: module paths in execution order. Totals at 224x224 equal torchvision's
    published GFLOPS (multiply-adds) of resnet18 (1.81) and resnet34 (3.66) to the digit, and are exact
    sums of K*C*R*S*H'*W' (golden numbers computed from the layer list)."""
    r18 = convert(resnet18(), "native", input_shape=(3, 224, 224)).geometry
    names = [layer.name for layer in r18.layers]
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert names[-1] == "fc" and "layer2.0.downsample.0" in names and len(names) == 21
    assert sum(layer.kind == "winograd" for layer in r18.layers) == 13
    assert r18.layer("layer4.1.conv2").in_height == 7 and r18.num_classes == 1000
    macs = sum(layer.dense_spatial_multiplies() for layer in r18.layers)
    assert macs == 1_814_073_344 and round(macs / 1e9, 2) == 1.81
    r34 = convert(resnet34(), "native", input_shape=(3, 224, 224)).geometry
    assert round(sum(layer.dense_spatial_multiplies() for layer in r34.layers) / 1e9, 2) == 3.66


def test_vgg11_geometry_and_multiply_adds() -> None:
    """VGG-11 at 224x224: 8 convolutions (7 Winograd) and 3 FC layers; torchvision's 7.61 GFLOPS with its
    4096-wide classifier = our convolutions + 25088*4096 + 4096*4096 + 4096*1000."""
    geometry = convert(vgg11(hidden=64), "native", input_shape=(3, 224, 224)).geometry
    assert [layer.op for layer in geometry.layers] == ["conv"] * 8 + ["fc"] * 3
    assert [layer.kind for layer in geometry.layers][:2] == ["spatial", "winograd"]
    convs = sum(layer.dense_spatial_multiplies() for layer in geometry.layers if layer.op == "conv")
    assert round((convs + 25088 * 4096 + 4096 * 4096 + 4096 * 1000) / 1e9, 2) == 7.61


def test_a_few_training_steps_with_pruning_keep_masked_weights_zero() -> None:
    torch.manual_seed(0)
    model = convert(resnet18(num_classes=10), "winograd_relu", init="fresh", input_shape=(3, 32, 32))
    prune_network(model, 0.5)
    assert network_density(model) == pytest.approx(0.5, abs=1e-6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    layer = model.get_submodule("layer1.0.conv2")
    assert isinstance(layer, ConvertedConv2d)
    before = layer.weight.detach().clone()
    model.train()
    for _ in range(3):
        x = torch.randn(4, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (4,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    assert not torch.equal(layer.weight, before)
    assert not layer.weight[~layer.weight_mask].any()
    assert network_density(model) == pytest.approx(0.5, abs=1e-6)


class _Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return self.conv(x)
        return x


def test_untraceable_model_and_model_without_eligible_layer_are_one_line_errors() -> None:
    with pytest.raises(ConversionError, match=r"torch\.fx cannot trace") as caught:
        convert(_Branching(), "native")
    assert "\n" not in str(caught.value)
    stem_only = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1))
    with pytest.raises(ConversionError, match=r"no Winograd-eligible .*0 \(3 input channels\); 2 \(stride"):
        convert(stem_only, "native")
    with pytest.raises(ConversionError, match="no geometry without an input shape"):
        _ = convert(small_residual_cnn(), "native").geometry


def test_eligibility_rule() -> None:
    assert conv_eligible(nn.Conv2d(8, 8, 3, padding=1))
    assert conv_eligible(nn.Conv2d(8, 8, 3, padding="same"))
    for conv in (
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, stride=2),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(8, 8, 3, padding=0),
        nn.Conv2d(8, 8, 5, padding=2),
    ):
        assert not conv_eligible(conv), conv


def test_converted_model_deepcopies_with_its_attributes() -> None:
    import copy

    model = convert(SmallResidualCNN(), "spatial", input_shape=(3, 16, 16))
    clone = copy.deepcopy(model)
    assert isinstance(clone, ConvertedModel)
    assert clone.mode == "spatial" and clone.converted == model.converted and clone.geometry == model.geometry
