"""AnyNet structure: stems, the four block types, shortcuts, SE widths, head conv, parameter validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.fx
from torch import nn

from search_spaces.anynet import AnyNetParams, build_anynet
from search_spaces.anynet_blocks import (
    BLOCKS,
    BottleneckTransform,
    ResBasicBlock,
    ResBottleneckBlock,
    ResBottleneckLinearBlock,
    VanillaBlock,
)


def _small(block_type: str, stem_type: str = "res_stem_cifar", **overrides) -> AnyNetParams:
    fields = dict(
        stem_type=stem_type,
        stem_width=8,
        block_type=block_type,
        depths=(1, 2),
        widths=(8, 16),
        strides=(1, 2),
        bottleneck_multipliers=(1.0, 0.5),
        group_widths=(4, 4),
        num_classes=5,
        resolution=16,
    )
    fields.update(overrides)
    return AnyNetParams(**fields)


@pytest.mark.parametrize("block_type", sorted(BLOCKS))
@pytest.mark.parametrize("stem_type", ["res_stem_cifar", "res_stem_in", "simple_stem_in"])
def test_every_block_and_stem_runs_and_traces(block_type: str, stem_type: str) -> None:
    model = build_anynet(_small(block_type, stem_type)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), out, rtol=0, atol=0)
    assert out.shape == (2, 5)
    assert isinstance(model.s2.b2, BLOCKS[block_type])


def test_stem_output_sizes() -> None:
    x = torch.randn(1, 3, 32, 32)
    sizes = {}
    for stem_type in ("res_stem_cifar", "res_stem_in", "simple_stem_in"):
        model = build_anynet(_small("res_basic_block", stem_type)).eval()
        sizes[stem_type] = tuple(model.stem(x).shape)
    assert sizes == {
        "res_stem_cifar": (1, 8, 32, 32),
        "res_stem_in": (1, 8, 8, 8),
        "simple_stem_in": (1, 8, 16, 16),
    }


def test_module_paths_read_like_pycls() -> None:
    model = build_anynet(_small("res_bottleneck_block", se_ratio=0.25))
    names = {name for name, _ in model.named_modules()}
    assert {"stem.conv", "s1.b1.f.a", "s2.b1.proj", "s2.b1.proj_bn", "s2.b2.f.se.reduce", "head.fc"} <= names
    assert "s1.b1.proj" not in names  # same width, stride 1: identity shortcut


def test_projection_shortcut_only_when_width_or_stride_changes() -> None:
    assert ResBasicBlock(8, 8, 1).proj is None
    for width_in, width_out, stride in ((8, 16, 1), (8, 8, 2)):
        block = ResBasicBlock(width_in, width_out, stride)
        assert block.proj.stride == (stride, stride) and block.proj.kernel_size == (1, 1)
        assert block.proj.bias is None and block.proj_bn.num_features == width_out
    assert not hasattr(VanillaBlock(8, 16, 2), "proj")
    assert ResBottleneckLinearBlock(8, 8, 1).has_skip and not ResBottleneckLinearBlock(8, 16, 1).has_skip


def test_linear_block_skip_and_no_final_relu() -> None:
    block = ResBottleneckLinearBlock(8, 8, 1, 1.0, 4).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.f(x))
        assert (block(x) < 0).any()  # linear output: no ReLU after the sum


def test_bottleneck_widths_groups_and_stride_placement() -> None:
    # ResNeXt-50 stage 1 block: width_out 256, multiplier 0.5 -> bottleneck 128, group width 4 -> 32 groups
    transform = BottleneckTransform(64, 256, 2, 0.5, 4, 0.0)
    assert (transform.a.out_channels, transform.b.groups, transform.c.out_channels) == (128, 32, 256)
    assert transform.a.stride == (1, 1) and transform.b.stride == (2, 2) and transform.se is None
    assert all(conv.bias is None for conv in (transform.a, transform.b, transform.c))


def test_se_squeeze_width_rounds_the_block_input_width() -> None:
    # round(0.25 * 22) = round(5.5) = 6 (half to even), computed from the block INPUT width, over the bottleneck
    block = ResBottleneckBlock(22, 48, 1, 1.0, 8, 0.25)
    assert (block.f.se.reduce.in_channels, block.f.se.reduce.out_channels) == (48, 6)
    assert block.f.se.reduce.bias is not None and block.f.se.expand.bias is not None
    assert isinstance(block.f.se.act, nn.ReLU)


def test_head_conv_when_head_width_positive() -> None:
    model = build_anynet(_small("res_basic_block", head_width=24)).eval()
    assert model.head.conv.out_channels == 24 and model.head.fc.in_features == 24
    assert build_anynet(_small("res_basic_block")).head.conv is None
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 5)


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        _small("res_basic_block", depths=(1, 2, 3))
    with pytest.raises(ValueError, match="unknown stem_type"):
        _small("res_basic_block", stem_type="patchify")
    with pytest.raises(ValueError, match="res_bottleneck_block"):
        _small("inverted_block")
    params = dataclasses.replace(_small("res_basic_block"), depths=[2, 2])
    assert params.depths == (2, 2)  # lists from user kwargs are stored as tuples (hashable, frozen)
    hash(params)


def test_initialization_follows_pycls() -> None:
    torch.manual_seed(0)
    model = build_anynet(_small("res_bottleneck_block", widths=(64, 128), group_widths=(8, 8)))
    conv = model.s2.b1.f.c  # 1x1, out 128: std sqrt(2 / 128) = 0.125
    assert abs(conv.weight.std().item() - 0.125) < 0.01
    assert abs(model.head.fc.weight.std().item() - 0.01) < 0.003 and not model.head.fc.bias.any()
    assert (model.stem.bn.weight == 1).all() and not model.stem.bn.bias.any()
