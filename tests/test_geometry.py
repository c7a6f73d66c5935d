"""Layer geometry: a layer is a validated record, and a network is plain code listing its layers.

Validation says which field is wrong and what it was. The network builders are checked against the
published sizes they must reproduce (paper.md sections 3-4), with the source and tolerance named.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from winosim.errors import ConfigError
from winosim.geometry import (
    NETWORKS,
    LayerGeometry,
    NetworkGeometry,
    convpool_cnn_c,
    network,
    resnet18_cifar,
    resnet18_imagenet,
    vgg_nagadomi,
)


def _layer(**overrides: Any) -> LayerGeometry:
    fields: dict[str, Any] = dict(
        name="l", kind="winograd", op="conv", in_channels=8, out_channels=4, in_height=6, in_width=5, kernel=3
    )
    fields |= {"stride": 1, "padding": 1}
    fields |= overrides
    return LayerGeometry(**fields)


def _dense_winograd_multiplies(layer: LayerGeometry) -> int:
    """F(2x2,3x3): 16 multiplies per (tile, input channel, output channel)."""
    th, tw = layer.tiles
    return 16 * th * tw * layer.in_channels * layer.out_channels


# --------------------------------------------------------------------------- validation


def test_a_valid_layer_derives_its_output_and_tiles():
    layer = _layer()
    assert (layer.out_height, layer.out_width) == (6, 5)
    assert layer.tiles == (3, 3)
    assert layer.winograd_eligible
    assert layer.dense_spatial_multiplies() == 4 * 8 * 9 * 6 * 5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"in_channels": 0}, "in_channels must be an integer >= 1, got 0"),
        ({"out_channels": -2}, "out_channels must be an integer >= 1, got -2"),
        ({"in_height": 2.5}, "in_height must be an integer >= 1, got 2.5"),
        ({"stride": True}, "stride must be an integer >= 1, got True"),
        ({"padding": -1}, "padding must be an integer >= 0, got -1"),
        ({"kind": "fancy"}, "kind must be one of"),
        ({"op": "pool"}, "op must be one of"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"kind": "winograd", "stride": 2}, "kind 'winograd' needs a 3x3, stride-1, padding-1 convolution"),
        ({"kind": "winograd", "in_channels": 3}, "in_channels=3"),
        ({"kind": "winograd", "kernel": 1, "padding": 0}, "kernel=1"),
        ({"kind": "spatial", "kernel": 9, "padding": 0}, "kernel 9 does not fit a 6x5 input"),
        ({"kind": "spatial", "op": "fc"}, "an fc layer must have kernel 1, a 1x1 input"),
    ],
)
def test_invalid_layers_name_the_field_and_value(overrides, message):
    with pytest.raises(ConfigError, match="LayerGeometry") as info:
        _layer(**overrides)
    assert message in str(info.value)


def test_layer_dict_round_trip_and_strict_fields():
    layer = _layer(kind="spatial", stride=2)
    assert LayerGeometry.from_dict(layer.to_dict()) == layer
    with pytest.raises(ConfigError, match=r"missing fields \['stride'\]"):
        LayerGeometry.from_dict({k: v for k, v in layer.to_dict().items() if k != "stride"})
    with pytest.raises(ConfigError, match=r"unknown fields \['colour'\]"):
        LayerGeometry.from_dict(layer.to_dict() | {"colour": "red"})
    with pytest.raises(ConfigError, match="expected a mapping"):
        LayerGeometry.from_dict([1, 2])  # type: ignore[arg-type]


def test_network_rejects_duplicate_names_and_no_layers():
    layer = _layer()
    with pytest.raises(ConfigError, match=r"duplicate layer names \['l'\]"):
        NetworkGeometry("n", 6, 5, 10, (layer, layer))
    with pytest.raises(ConfigError, match="needs at least one layer"):
        NetworkGeometry("n", 6, 5, 10, ())
    net = NetworkGeometry("n", 6, 5, 10, (layer,))
    assert net.layer("l") is layer
    with pytest.raises(ConfigError, match="no layer named 'x'"):
        net.layer("x")


def test_unknown_network_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown network 'alexnet'; known: convpool_cnn_c, resnet18_cifar"):
        network("alexnet")


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_known_network_is_consistent(name):
    """Invariants of every builder: Winograd layers are exactly the eligible ones except where a builder
    opts out, each layer's input is the output of some earlier stage, and names are unique."""
    net = network(name)
    assert net.name == name
    for layer in net.layers:
        if layer.kind == "winograd":
            assert layer.winograd_eligible
        if layer.op == "conv" and layer.kernel == 3 and layer.stride == 1 and layer.in_channels > 3:
            assert layer.kind == "winograd", layer.name
        else:
            assert layer.kind == "spatial", layer.name
    assert net.layers[0].in_channels == 3
    assert net.layers[-1].out_channels == net.num_classes


# --------------------------------------------------------------------------- the paper's networks


def test_resnet18_imagenet_structure_matches_the_authors_variant():
    """paper.md section 3: 7x7/2 stem, 3x3/2 max-pools, all 16 residual 3x3 convolutions stride 1 and
    Winograd, 1x1 projection shortcuts and FC spatial, the last pool removed so stage 4 runs at 14x14."""
    net = resnet18_imagenet()
    names = [layer.name for layer in net.layers]
    expected = ["conv1"]
    for stage in range(1, 5):
        for block in range(2):
            expected += [f"layer{stage}.{block}.conv1", f"layer{stage}.{block}.conv2"]
            if stage > 1 and block == 0:
                expected.append(f"layer{stage}.0.shortcut")
    expected.append("fc")
    assert names == expected
    winograd = [layer for layer in net.layers if layer.kind == "winograd"]
    assert len(winograd) == 16
    assert all(layer.stride == 1 and layer.kernel == 3 for layer in winograd)
    stem = net.layer("conv1")
    assert (stem.kind, stem.kernel, stem.stride, stem.out_height) == ("spatial", 7, 2, 112)
    assert [net.layer(f"layer{s}.0.conv1").in_height for s in range(1, 5)] == [56, 28, 14, 14]
    assert net.layer("layer4.1.conv2").out_height == 14
    assert net.layer("fc").in_channels == 512


def test_resnet18_imagenet_is_about_3_05_g_macs():
    """paper.md section 3: removing the last pool gives 'about 3.06 G' multiply-accumulates per 224x224 image
    (vs 1.8 G for the usual ResNet-18). Our geometry gives 3.047 G; tolerance 1%."""
    total = sum(layer.dense_spatial_multiplies() for layer in resnet18_imagenet().layers)
    assert total == 3_047_198_720
    assert math.isclose(total, 3.06e9, rel_tol=0.01)


def test_resnet18_cifar_is_about_0_56_g_macs_with_a_4x4_final_map():
    net = resnet18_cifar()
    total = sum(layer.dense_spatial_multiplies() for layer in net.layers)
    assert math.isclose(total, 0.56e9, rel_tol=0.01)
    assert net.layer("conv1").kind == "spatial"  # 3 input channels
    assert net.layer("layer4.1.conv2").out_height == 4


def test_vgg_nagadomi_3x3_layers_spatial_and_winograd_multiplies():
    """paper.md section 4: 'about 228 M spatial / 101 M Winograd multiplies in the 3x3 layers at 32x32'.

    228 M: the eight 3x3 convolutions computed directly, exactly 228,261,888 (tolerance 0.5%).
    101 M: the same eight layers all computed with F(2x2,3x3), i.e. 228.26 M / 2.25 = 101,449,728. winosim's
    dense Winograd method keeps the first convolution (3 input channels, the RGB stem) spatial, as the paper
    does in its networks (paper.md section 3), so its 3x3-layer total is 102,432,768: the 101 M plus the
    983,040 multiplies conv1 costs spatially (1,769,472) beyond its Winograd cost (786,432).
    """
    net = vgg_nagadomi()
    three_by_three = [layer for layer in net.layers if layer.kernel == 3]
    assert [layer.name for layer in three_by_three] == [f"conv{i}" for i in range(1, 9)]
    spatial = sum(layer.dense_spatial_multiplies() for layer in three_by_three)
    assert spatial == 228_261_888
    assert math.isclose(spatial, 228e6, rel_tol=0.005)

    all_winograd = sum(_dense_winograd_multiplies(layer) for layer in three_by_three)
    assert all_winograd * 9 == spatial * 4  # every map side is even: exactly 2.25x fewer
    assert all_winograd == 101_449_728
    assert math.isclose(all_winograd, 101e6, rel_tol=0.005)

    stem = net.layer("conv1")
    assert stem.kind == "spatial"
    ours = sum(
        _dense_winograd_multiplies(layer) if layer.kind == "winograd" else layer.dense_spatial_multiplies()
        for layer in three_by_three
    )
    assert ours == 102_432_768
    assert ours - all_winograd == stem.dense_spatial_multiplies() - _dense_winograd_multiplies(stem) == 983_040


def test_vgg_nagadomi_structure():
    net = vgg_nagadomi()
    assert [layer.out_channels for layer in net.layers] == [64, 64, 128, 128, 256, 256, 256, 256, 1024, 1024, 10]
    assert [layer.in_height for layer in net.layers[:8]] == [32, 32, 16, 16, 8, 8, 8, 8]
    assert net.layer("fc1").in_channels == 256 * 4 * 4
    assert all(net.layer(f"fc{i}").op == "fc" for i in (1, 2, 3))


def test_convpool_cnn_c_structure():
    """paper.md section 4 (Springenberg et al. 2015): 3x3 96 x3, pool, 3x3 192 x3, pool, 3x3 192, 1x1 192,
    1x1 100."""
    net = convpool_cnn_c()
    assert [layer.name for layer in net.layers] == [f"conv{i}" for i in range(1, 10)]
    assert [layer.kernel for layer in net.layers] == [3] * 7 + [1, 1]
    assert [layer.out_channels for layer in net.layers] == [96, 96, 96, 192, 192, 192, 192, 192, 100]
    assert [layer.in_height for layer in net.layers] == [32, 32, 32, 16, 16, 16, 8, 8, 8]
    assert [layer.kind for layer in net.layers].count("winograd") == 6
