"""The ``complex`` operator against torch's complex-dtype convolution (operators/complex.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from operators import ConvSpec
from operators.complex import ComplexConv2d


def _to_complex(x: torch.Tensor, groups: int, lift: bool = False) -> torch.Tensor:
    """Real layout (N, G * C, H, W), per group [real half; imaginary half] -> complex (N, G * C / 2, H, W)."""
    if lift:
        return torch.complex(x, torch.zeros_like(x))
    batch, channels, height, width = x.shape
    grouped = x.reshape(batch, groups, 2, channels // groups // 2, height, width)
    return torch.complex(grouped[:, :, 0], grouped[:, :, 1]).reshape(batch, channels // 2, height, width)


def _reference(op: ComplexConv2d, x: torch.Tensor) -> torch.Tensor:
    """The layer computed on complex tensors by torch: pad, then F.conv2d with W_r + i W_i and b_r + i b_i."""
    s = op.spec
    lift = op.input_mode == "lift"
    z = _to_complex(x, s.groups, lift)
    weight = torch.complex(op.weight_real, op.weight_imag)  # (G * out/2, in', k_h, k_w)
    bias = None if op.bias_real is None else torch.complex(op.bias_real, op.bias_imag)
    mode = "constant" if s.padding_mode == "zeros" else s.padding_mode
    z = F.pad(z, s.padding, mode=mode)
    return F.conv2d(z, weight, bias, s.stride, 0, s.dilation, s.groups)  # (N, G * out/2, H', W') complex


GEOMETRIES = [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=2),
    dict(in_channels=12, out_channels=6, kernel_size=3, stride=2, padding=2, dilation=2, groups=3),
    dict(in_channels=4, out_channels=4, kernel_size=(2, 3), padding="same", padding_mode="circular"),
    dict(in_channels=6, out_channels=4, kernel_size=3, padding=1, padding_mode="reflect", bias=False),
]


@pytest.mark.parametrize(
    "real_dtype,complex_dtype", [(torch.float32, torch.complex64), (torch.float64, torch.complex128)]
)
@pytest.mark.parametrize("kwargs", GEOMETRIES, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()))
def test_matches_complex_dtype_reference(kwargs, real_dtype, complex_dtype):
    torch.manual_seed(0)
    op = ComplexConv2d(**kwargs).to(real_dtype)
    with torch.no_grad():  # move the bias off its init so a layout slip in the bias shows
        for p in op.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, kwargs["in_channels"], 9, 10, dtype=real_dtype)
    expected = _reference(op, x)
    assert expected.dtype == complex_dtype
    with torch.no_grad():
        for y in (op(x), op.collapse()(x)):
            got = _to_complex(y, op.spec.groups)
            assert (got - expected).abs().max().item() <= 1e-6 * max(1.0, expected.abs().max().item())


def test_bias_is_real_plus_i_imag_not_complexpytorch():
    op = ComplexConv2d(4, 8, 3, padding=1, groups=2)
    with torch.no_grad():
        op.weight_real.zero_()
        op.weight_imag.zero_()
        op.bias_real.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        op.bias_imag.copy_(torch.tensor([10.0, 20.0, 30.0, 40.0]))
    y = op(torch.zeros(1, 4, 5, 5))[0, :, 0, 0]
    # per group [b_r; b_i]; complexPyTorch would give real -9, -18 and imaginary 11, 22 for group 0
    assert y.tolist() == [1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0]


def test_collapsed_block_weight_layout():
    op = ComplexConv2d(4, 4, 1, bias=False)
    with torch.no_grad():
        op.weight_real.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1))
        op.weight_imag.copy_(torch.tensor([[5.0, 6.0], [7.0, 8.0]]).reshape(2, 2, 1, 1))
    expected = torch.tensor(
        [[1.0, 2.0, -5.0, -6.0], [3.0, 4.0, -7.0, -8.0], [5.0, 6.0, 1.0, 2.0], [7.0, 8.0, 3.0, 4.0]]
    )
    collapsed = op.collapse()
    assert torch.equal(collapsed.weight[:, :, 0, 0], expected)
    assert collapsed.bias is None


def test_lift_mode_rgb_stem():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    spec = ConvSpec.from_conv(conv)
    reason = ComplexConv2d.eligibility(spec, input_mode="complex")
    assert reason is not None and "lift" in reason
    assert ComplexConv2d.eligibility(spec) is None
    op = ComplexConv2d.from_conv(conv)
    assert op.input_mode == "lift"
    x = torch.randn(2, 3, 11, 12)
    with torch.no_grad():
        torch.testing.assert_close(op(x), conv(x), rtol=0, atol=1e-6)  # the lift reproduces the conv exactly
        got = _to_complex(op(x), 1)
        expected = _reference(op, x)
    assert (got - expected).abs().max().item() <= 1e-6
    assert torch.equal(_to_complex(x, 1, lift=True).imag, torch.zeros_like(x))


def test_lift_mode_on_even_input_grouped():
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 8, 3, padding=1, groups=2)  # 3 input channels per group: auto lifts
    op = ComplexConv2d.from_conv(conv)
    assert op.input_mode == "lift"
    x = torch.randn(1, 6, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(op(x), conv(x), rtol=0, atol=1e-6)
    forced = ComplexConv2d(4, 4, 3, padding=1, input_mode="lift")
    assert forced.weight_real.shape == (2, 4, 3, 3)


def test_odd_output_channels_are_ineligible():
    for conv in (nn.Conv2d(4, 5, 3), nn.Conv2d(6, 6, 3, groups=6), nn.Conv2d(4, 6, 1, groups=2)):
        reason = ComplexConv2d.eligibility(ConvSpec.from_conv(conv))
        assert reason is not None and "odd" in reason and "output" in reason
        with pytest.raises(ValueError, match="odd"):
            ComplexConv2d.from_conv(conv)


@pytest.mark.parametrize("groups", [1, 2])
def test_parameter_count_is_half_a_real_conv(groups):
    conv = nn.Conv2d(8, 12, 3, padding=1, groups=groups)
    weights = conv.weight.numel()
    op = ComplexConv2d.from_conv(conv)
    assert op.input_mode == "complex"
    assert op.training_parameter_count() == weights // 2 + 12
    assert op.collapse().weight.numel() == weights
    lifted = ComplexConv2d.from_conv(conv, input_mode="lift")
    assert lifted.training_parameter_count() == weights + 12
    no_bias = ComplexConv2d(8, 12, 3, groups=groups, bias=False)
    assert no_bias.training_parameter_count() == weights // 2


def test_from_conv_is_the_nearest_block_structured_conv():
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=2).double()
    op = ComplexConv2d.from_conv(conv)
    weight, projected = conv.weight.detach(), op.collapse().weight.detach()
    # an orthogonal projection: the residual is orthogonal to the block-structured subspace (which holds `projected`)
    assert abs(torch.sum((weight - projected) * projected).item()) < 1e-12
    assert (weight - projected).abs().max() > 1e-3
    torch.testing.assert_close(op.collapse().bias, conv.bias, rtol=0, atol=0)
    # a conv that already is block structured is reproduced exactly
    again = ComplexConv2d.from_conv(op.collapse())
    torch.testing.assert_close(again.collapse().weight, projected, rtol=0, atol=1e-15)


def test_gradients_reach_both_parts_through_the_complex_product():
    torch.manual_seed(3)
    op = ComplexConv2d(4, 4, 3, padding=1).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    names = [n for n, _ in op.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for _, p in op.named_parameters())

    def fn(*param_values):
        return torch.func.functional_call(op, dict(zip(names, param_values)), (x,))

    assert torch.autograd.gradcheck(fn, values, eps=1e-6, atol=1e-6, fast_mode=True)
