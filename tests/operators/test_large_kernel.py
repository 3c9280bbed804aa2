"""``large_kernel``: branch tables, BN folding, dilation to dense, eligibility, geometry and weight seeding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from operators import ConvSpec
from operators.large_kernel import (
    SUPPORTED_KERNELS,
    LargeKernelConv2d,
    branch_table,
    dilate_kernel,
    effective_kernel,
    fold_batch_norm,
)


def _randomize_norms_(op: LargeKernelConv2d, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in op.norms:
            shape = norm.weight.shape
            norm.weight.copy_(0.5 + torch.rand(shape, generator=gen))
            norm.bias.copy_(torch.randn(shape, generator=gen))
            norm.running_mean.copy_(torch.randn(shape, generator=gen))
            norm.running_var.copy_(0.5 + torch.rand(shape, generator=gen))


def test_unireplknet_tables():
    # UniRepLKNet (Ding et al. 2024): K=13 -> kernels 5,7,3,3,3 at dilations 1,2,3,4,5; K=17 -> 5,9,3,3,3 at 1,2,4,5,7
    assert branch_table(13) == ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5))
    assert branch_table(17) == ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7))
    assert branch_table(5) == ((3, 1), (3, 2))
    assert branch_table(7) == ((5, 1), (3, 2), (3, 3))
    assert branch_table(9) == ((5, 1), (5, 2), (3, 3), (3, 4))
    assert branch_table(11) == ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5))
    assert branch_table(15) == ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7))


@pytest.mark.parametrize("size", [19, 23, 27, 31])
def test_replknet_form_for_larger_kernels(size):
    # RepLKNet (Ding et al. 2022): the KxK kernel plus one 5x5 branch
    assert branch_table(size) == ((5, 1),)


@pytest.mark.parametrize("size", [3, 4, 12, 33])
def test_unsupported_kernel_sizes_raise(size):
    with pytest.raises(ValueError, match="odd integer"):
        branch_table(size)


@pytest.mark.parametrize("size", SUPPORTED_KERNELS)
def test_every_branch_fits_inside_the_large_kernel(size):
    for kernel, dilation in branch_table(size):
        span = effective_kernel(kernel, dilation)
        assert span % 2 == 1 and span <= size


def test_dilate_kernel_by_hand():
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    expected = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    assert torch.equal(dilate_kernel(weight, 2)[0, 0], expected)
    per_axis = dilate_kernel(weight, (1, 3))[0, 0]  # columns spread by 3, rows kept
    assert torch.equal(per_axis, torch.tensor([[1.0, 0.0, 0.0, 2.0], [3.0, 0.0, 0.0, 4.0]]))


def test_fold_batch_norm_by_hand():
    bn = nn.BatchNorm2d(1, eps=0.0).eval()
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0)
    weight, bias = fold_batch_norm(torch.full((1, 1, 1, 1), 2.0), bn)
    # scale = gamma / sqrt(var) = 1.5; W' = 2 * 1.5 = 3; b' = beta - mean * scale = 0.5 - 1.5 = -1
    assert weight.item() == 3.0 and bias.item() == -1.0


def test_fold_batch_norm_matches_conv_then_bn():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False).double()
    bn = nn.BatchNorm2d(5).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    weight, bias = fold_batch_norm(conv.weight, bn)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    expected = bn(conv(x))
    torch.testing.assert_close(nn.functional.conv2d(x, weight, bias, padding=1), expected)


@pytest.mark.parametrize("size", SUPPORTED_KERNELS)
def test_collapse_equals_eval_output_for_every_kernel(size):
    torch.manual_seed(size)
    op = LargeKernelConv2d(3, 3, 3, padding=1, groups=3, large_kernel_size=size).double()
    _randomize_norms_(op, seed=size)
    op.eval()
    collapsed = op.collapse()
    assert collapsed.kernel_size == (size, size) and collapsed.padding == (size // 2, size // 2)
    for shape in [(1, 3, 1, 1), (2, 3, 6, 9), (1, 3, 17, 11)]:
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            y = op(x)
        assert (
            y.shape
            == nn.functional.conv2d(x, torch.zeros(3, 1, 3, 3, dtype=x.dtype), padding=1, groups=3).shape
        )
        torch.testing.assert_close(collapsed(x), y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "conv_kwargs",
    [
        dict(
            kernel_size=5, groups=4
        ),  # valid padding: some branches read inside the KxK window (cropped path)
        dict(kernel_size=3, padding=2, dilation=2, groups=4),
        dict(kernel_size=3, padding=1, groups=2, padding_mode="replicate"),
        dict(kernel_size=(3, 1), padding=(1, 0), groups=4),
    ],
)
def test_geometry_matches_the_replaced_conv(conv_kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, **conv_kwargs).double()
    op = LargeKernelConv2d.from_conv(conv, large_kernel_size=7)
    _randomize_norms_(op)
    op.eval()
    collapsed = op.collapse()
    assert ConvSpec.from_conv(collapsed) == op.collapsed_spec()
    for shape in [(1, 4, 9, 9), (2, 4, 12, 7)]:
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            y = op(x)
        assert y.shape == conv(x).shape
        torch.testing.assert_close(collapsed(x), y, rtol=1e-10, atol=1e-10)


def test_eligibility_messages():
    def reason(**kwargs):
        params = {key: kwargs.pop(key) for key in ("large_kernel_size", "allow_dense") if key in kwargs}
        return LargeKernelConv2d.eligibility(ConvSpec.create(8, 8, **kwargs), **params)

    assert reason(kernel_size=3, padding=1, groups=8) is None  # depthwise
    assert reason(kernel_size=3, padding=1, groups=2) is None  # grouped
    assert "allow_dense" in reason(kernel_size=3, padding=1)  # dense needs the explicit parameter
    assert reason(kernel_size=3, padding=1, allow_dense=True) is None
    assert "stride" in reason(kernel_size=3, padding=1, stride=2, groups=8)
    assert "even" in reason(kernel_size=2, groups=8)
    assert "larger" in reason(kernel_size=7, padding=3, groups=8, large_kernel_size=5)
    assert "padding_mode" in reason(kernel_size=3, padding=1, groups=8, padding_mode="reflect")
    assert "odd integer" in reason(kernel_size=3, padding=1, groups=8, large_kernel_size=12)


def test_ineligible_conv_raises_with_reason():
    with pytest.raises(ValueError, match="stride"):
        LargeKernelConv2d.from_conv(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4))
    with pytest.raises(ValueError, match="allow_dense"):
        LargeKernelConv2d(4, 4, 3, padding=1)


@pytest.mark.parametrize(
    "conv_kwargs",
    [dict(kernel_size=3, padding=1), dict(kernel_size=5), dict(kernel_size=3, padding=2, dilation=2)],
)
def test_conv_weights_seed_the_centre(conv_kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, groups=4, **conv_kwargs).double()
    op = LargeKernelConv2d.from_conv(conv, large_kernel_size=9)
    large = op.weights[0]
    dilation = conv.dilation[0]
    span = effective_kernel(conv.kernel_size[0], dilation)
    start = (9 - span) // 2
    centre = large[:, :, start : start + span : dilation, start : start + span : dilation]
    assert torch.equal(centre, conv.weight)
    assert large.abs().sum() == conv.weight.abs().sum()  # zeros everywhere else
    # As built, the small branches are silent (BN scale 0) and the block reproduces the conv (alignment included).
    op.eval()
    x = torch.randn(2, 4, 11, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(op(x), conv(x))


@pytest.mark.parametrize("size", [5, 9, 19])
@pytest.mark.parametrize(
    "conv_kwargs",
    [
        dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6),
        dict(in_channels=4, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=2, bias=False),
        dict(in_channels=4, out_channels=4, kernel_size=5, padding=1, groups=4, padding_mode="replicate"),
    ],
)
def test_from_conv_starts_as_the_replaced_conv(size, conv_kwargs):
    """Right after ``from_conv`` the block computes the replaced conv (as conv_lora does with B = 0): in eval
    mode exactly, through the uncollapsed forward and the collapsed conv; in training mode the small branches add
    exactly nothing (their BN scale is zero), so the output is the KxK branch's alone."""
    torch.manual_seed(0)
    conv = nn.Conv2d(**conv_kwargs)
    if conv.bias is not None:
        nn.init.normal_(conv.bias)
    op = LargeKernelConv2d.from_conv(conv, large_kernel_size=size)
    x = torch.randn(2, conv.in_channels, 12, 11)
    expected = conv(x).detach()
    op.eval()
    with torch.no_grad():
        torch.testing.assert_close(op(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(op.collapse()(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op(x), expected, rtol=1e-5, atol=1e-5)  # the branch-by-branch forward
    op.train()
    y = op(x)
    big = op.weights[0]
    pad_h, pad_w = op._padding
    padded = F.pad(
        x, (pad_w, pad_w, pad_h, pad_h), mode="constant" if conv.padding_mode == "zeros" else "replicate"
    )
    alone = op.norms[0](F.conv2d(padded, big, None, 1, 0, 1, conv.groups))
    torch.testing.assert_close(y, alone, rtol=1e-5, atol=1e-5)
    y.square().sum().backward()  # the silent branches' BN scales learn from the first step
    assert all(norm.weight.grad.abs().sum() > 0 for norm in op.norms[1:])


def test_parameter_counts():
    op = LargeKernelConv2d(4, 4, 3, padding=1, groups=4, large_kernel_size=13)
    # kernels 13, 5, 7, 3, 3, 3 per channel plus BN weight and bias for each of the 6 branches
    assert op.training_parameter_count() == 4 * (169 + 25 + 49 + 9 + 9 + 9) + 6 * 2 * 4
    collapsed = op.eval().collapse()
    assert sum(p.numel() for p in collapsed.parameters()) == 4 * 169 + 4
    assert op.collapsed_bias() is True


def test_training_forward_updates_every_branch_norm():
    torch.manual_seed(0)
    op = LargeKernelConv2d(4, 4, 3, padding=1, groups=4, large_kernel_size=7).train()
    op(torch.randn(2, 4, 8, 8))
    for norm in op.norms:
        assert norm.num_batches_tracked.item() == 1
        assert not torch.equal(norm.running_mean, torch.zeros(4))
