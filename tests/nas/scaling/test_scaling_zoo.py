"""Graph-level scaling over torchvision's zoo: realized flops within 15% of s, activations growing far slower
(about s^0.6 for dWr), and the scaled models run."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from nas.cost import count
from nas.graph import capture
from nas.scaling import scale_model

torchvision = pytest.importorskip("torchvision")

ZOO = [
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
    "densenet121",
    "shufflenet_v2_x1_0",
    "regnet_y_400mf",
]


@functools.cache
def _meta(name: str) -> torch.nn.Module:
    """Built on the meta device (no weights: costs are analytic) when the builder allows it."""
    try:
        with torch.device("meta"):
            return getattr(torchvision.models, name)()
    except NotImplementedError:  # RegNet's builder computes widths with tensors
        return getattr(torchvision.models, name)()


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("name", ZOO)
def test_realized_costs_follow_the_factor(name, factor):
    scaled = scale_model(_meta(name), factor, "dWr", (3, 224, 224))
    costs = scaled.costs()
    flops, acts = costs["ratios"]["flops"], costs["ratios"]["acts"]
    assert abs(flops / factor - 1) < 0.15, (flops, scaled.notes)
    assert factor**0.45 < acts < factor**0.75 and acts < flops, acts  # dWr: acts grow about s^(1 - 0.8/2)
    assert costs["after"] == {
        key: value
        for key, value in count(capture(scaled.module, scaled.input_shape)).totals().items()
        if key in costs["after"]
    }
    assert scaled.input_shape[1] == 224 * {2: 232, 4: 240}[factor] // 224  # 224 * s^0.05 to a multiple of 4


def _small(name: str) -> torch.nn.Module:
    """Small members of the zoo's families (the same block classes, few channels): quick to build and run."""
    from torchvision.models import convnext, densenet, efficientnet, regnet, resnet

    mbconv = efficientnet.MBConvConfig
    builders = {
        "resnext": lambda: resnet.ResNet(
            resnet.Bottleneck, [2, 2, 1, 1], num_classes=7, groups=4, width_per_group=8
        ),
        "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=7),
        "efficientnet": lambda: efficientnet.EfficientNet(
            [mbconv(1, 3, 1, 16, 16, 1, 1.0, 1.0), mbconv(6, 5, 2, 16, 24, 2, 1.0, 1.0)], 0.2, num_classes=7
        ),
        "convnext": lambda: convnext.ConvNeXt(
            [convnext.CNBlockConfig(16, 32, 2), convnext.CNBlockConfig(32, None, 2)], num_classes=7
        ),
        "densenet": lambda: densenet.DenseNet(
            growth_rate=8, block_config=(2, 3), num_init_features=16, num_classes=7
        ),
        "shufflenet": lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=7),
        "regnet": lambda: regnet.RegNet(
            regnet.BlockParams.from_init_params(
                depth=6, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25
            ),
            num_classes=7,
        ),
    }
    return builders[name]().eval()


@pytest.mark.parametrize(
    "name", ["resnext", "mobilenet_v3_small", "efficientnet", "convnext", "densenet", "shufflenet", "regnet"]
)
def test_scaled_models_run(name):
    scaled = scale_model(_small(name), 4, "dWr", (3, 32, 32))
    with torch.no_grad():
        output = scaled.module.eval()(torch.randn(2, *scaled.input_shape))
    assert output.shape == (2, 7) and torch.isfinite(output).all()
    assert isinstance(scaled.module, torch.fx.GraphModule)
    assert capture(scaled.module, scaled.input_shape)  # still traceable, shapes propagate
    assert abs(scaled.costs()["ratios"]["flops"] / 4 - 1) < 0.15


def test_flops_matching_can_be_turned_off():
    model = _meta("resnet18")  # 2 blocks per stage: d = 8^0.1 = 1.23 rounds back to 2
    exact = scale_model(model, 8, "dWr", (3, 224, 224), match_flops=False)
    matched = scale_model(model, 8, "dWr", (3, 224, 224))
    assert exact.after.depths == (2, 2, 2, 2) and exact.costs()["ratios"]["flops"] < 6.8
    assert abs(matched.costs()["ratios"]["flops"] / 8 - 1) < 0.05
    assert any("multiplier" in note for note in matched.notes)
    assert math.isclose(exact.factors.width, 8**0.4)
