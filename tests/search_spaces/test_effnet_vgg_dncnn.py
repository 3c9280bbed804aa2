"""Structure of the EfficientNet, VGG and DnCNN families."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
from torch import nn

from search_spaces import get_family
from search_spaces.effnet import MBConv

# ------------------------------------------------------------------------------------------------ EfficientNet


def test_mbconv_expansion_absent_when_ratio_is_one() -> None:
    assert MBConv(32, 16, 1, 1, 3, 0.25).exp is None
    block = MBConv(16, 24, 2, 6, 3, 0.25)
    assert (block.exp.in_channels, block.exp.out_channels) == (16, 96)


def test_mbconv_depthwise_padding_stride_and_groups() -> None:
    block = MBConv(24, 40, 2, 6, 5, 0.25)
    assert (block.dwise.groups, block.dwise.padding, block.dwise.stride) == (144, (2, 2), (2, 2))
    x = torch.randn(1, 24, 15, 15)
    assert block.eval()(x).shape == (1, 40, 8, 8)


def test_mbconv_se_truncates_the_input_width_and_uses_silu() -> None:
    # int(22 * 0.25) = int(5.5) = 5 (AnyNet would round to 6); SE runs over the expanded width 132
    block = MBConv(22, 22, 1, 6, 3, 0.25)
    assert (block.se.reduce.in_channels, block.se.reduce.out_channels) == (132, 5)
    assert isinstance(block.se.act, nn.SiLU) and block.se.reduce.bias is not None


def test_mbconv_residual_only_for_stride_one_and_equal_widths() -> None:
    assert MBConv(16, 16, 1, 6, 3, 0.25).has_skip
    assert not MBConv(16, 16, 2, 6, 3, 0.25).has_skip and not MBConv(16, 24, 1, 6, 3, 0.25).has_skip
    block = MBConv(16, 16, 1, 6, 3, 0.25).eval()
    x = torch.randn(1, 16, 7, 7)
    with torch.no_grad():
        block.lin_proj_bn.weight.zero_()  # f(x) = BN output = its bias (0): the block is then the identity
        torch.testing.assert_close(block(x), x)


def test_effnet_head_and_dropout_kwarg() -> None:
    family = get_family("effnet")
    params = dataclasses.replace(family.config("EN-B0"), dropout_ratio=0.3)
    with torch.device("meta"):
        model = family.build(params)
    assert model.head.dropout.p == 0.3 and model.head.conv.out_channels == 1280
    assert isinstance(model.stem.act, nn.SiLU) and model.stem.conv.stride == (2, 2)
    assert family.config("EN-B0").dropout_ratio == 0.0  # pycls default


# --------------------------------------------------------------------------------------------------------- VGG


@pytest.mark.parametrize(
    ("config_name", "convs", "torchvision_builder"),
    [
        ("VGG-11-cifar", 8, "vgg11_bn"),
        ("VGG-13-cifar", 10, "vgg13_bn"),
        ("VGG-16-cifar", 13, "vgg16_bn"),
        ("VGG-19-cifar", 16, "vgg19_bn"),
    ],
)
def test_vgg_layers_match_the_standard_configurations(
    config_name: str, convs: int, torchvision_builder: str
) -> None:
    family = get_family("vgg")
    params = family.config(config_name)
    assert family.input_shape(params) == (3, 32, 32) and params.num_classes == 100
    with torch.device("meta"):
        model = family.build(params)
        reference = getattr(torchvision.models, torchvision_builder)()
    modules = list(model.modules())
    assert sum(isinstance(module, nn.Conv2d) for module in modules) == convs
    assert sum(isinstance(module, nn.MaxPool2d) for module in modules) == 5
    # the convolutional part is torchvision's VGG-BN feature extractor; the classifier is Linear(512, 100)
    feature_params = sum(parameter.numel() for parameter in reference.features.parameters())
    assert sum(parameter.numel() for parameter in model.parameters()) == feature_params + 512 * 100 + 100
    assert (model.head.fc.in_features, model.head.fc.out_features) == (512, 100)


def test_vgg_forward_shape_on_cifar() -> None:
    model = get_family("vgg").build(get_family("vgg").config("VGG-16-cifar")).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


# ------------------------------------------------------------------------------------------------------- DnCNN


@pytest.mark.parametrize(("config_name", "depth"), [("DnCNN-17", 17), ("DnCNN-20", 20)])
def test_dncnn_layers(config_name: str, depth: int) -> None:
    family = get_family("dncnn")
    params = family.config(config_name)
    assert family.input_shape(params) == (1, 40, 40)
    model = family.build(params)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert len(convs) == depth
    assert sum(isinstance(module, nn.BatchNorm2d) for module in model.modules()) == depth - 2
    assert convs[0].bias is not None and all(conv.bias is None for conv in convs[1:])
    assert (convs[0].in_channels, convs[-1].out_channels) == (1, 1)
    assert all(conv.kernel_size == (3, 3) and conv.padding == (1, 1) for conv in convs)


def test_dncnn17_parameter_count_by_hand() -> None:
    # first conv 9 * 1 * 64 + 64 = 640; 15 x (9 * 64 * 64 + 2 * 64 BN) = 554,880; last conv 9 * 64 * 1 = 576
    model = get_family("dncnn").build(get_family("dncnn").config("DnCNN-17"))
    assert sum(parameter.numel() for parameter in model.parameters()) == 640 + 554_880 + 576


def test_dncnn_returns_input_minus_predicted_noise() -> None:
    torch.manual_seed(0)
    model = get_family("dncnn").build(get_family("dncnn").config("DnCNN-17")).eval()
    x = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        noise = model.head(model.body(model.stem(x)))
        torch.testing.assert_close(model(x), x - noise)
        model.head.weight.zero_()
        torch.testing.assert_close(model(x), x, rtol=0, atol=0)
