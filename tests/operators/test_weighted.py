"""``weighted``: the density math by hand, the parameter schema and count, eligibility, learnable densities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from operators import ConvSpec
from operators.weighted import WeightedConv2d


def _ones_op(kernel_size, **params) -> WeightedConv2d:
    op = WeightedConv2d(1, 1, kernel_size, bias=False, **params).double()
    with torch.no_grad():
        op.weight.fill_(1.0)
    return op


def test_3x3_density_by_hand():
    # a = [0.5, 1, 0.5]; outer(a, a) = [[.25, .5, .25], [.5, 1, .5], [.25, .5, .25]]
    op = _ones_op(3, density=0.5)
    expected = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=torch.float64)
    assert torch.equal(op.effective_weight()[0, 0], expected)
    assert torch.equal(op.collapse().weight[0, 0], expected)
    image = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    assert op(image).item() == pytest.approx(4 * 0.25 + 4 * 0.5 + 1.0)


def test_5x5_density_by_hand():
    # density = d at distance 1, density_2 = d2 at distance 2: a = [0.6, 0.8, 1, 0.8, 0.6]
    op = _ones_op(5, density=0.8, density_2=0.6)
    mask = op.effective_weight()[0, 0]
    expected_rows = {
        0: [0.36, 0.48, 0.6, 0.48, 0.36],
        1: [0.48, 0.64, 0.8, 0.64, 0.48],
        2: [0.6, 0.8, 1.0, 0.8, 0.6],
    }
    for row, values in expected_rows.items():
        torch.testing.assert_close(mask[row], torch.tensor(values, dtype=torch.float64))
        torch.testing.assert_close(mask[4 - row], torch.tensor(values, dtype=torch.float64))


def test_density_3_is_ignored_below_7x7_and_used_at_7x7():
    small = _ones_op(5, density=0.8, density_2=0.6, density_3=0.1)
    assert small.effective_weight().min().item() == pytest.approx(0.36)
    large = _ones_op(7, density=0.8, density_2=0.6, density_3=0.5)
    assert large.effective_weight()[0, 0, 0, 0].item() == pytest.approx(0.25)
    assert large.effective_weight()[0, 0, 3, 0].item() == pytest.approx(0.5)


def test_non_square_kernel_weights_each_axis():
    op = _ones_op((1, 3), density=0.7)
    torch.testing.assert_close(
        op.effective_weight()[0, 0], torch.tensor([[0.7, 1.0, 0.7]], dtype=torch.float64)
    )


def test_forward_is_conv_with_the_weighted_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect").double()
    op = WeightedConv2d.from_conv(conv, density=1.3)
    a = torch.tensor([1.3, 1.0, 1.3], dtype=torch.float64)
    reference = nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect").double()
    with torch.no_grad():
        reference.weight.copy_(conv.weight * torch.outer(a, a))
        reference.bias.copy_(conv.bias)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(op(x), reference(x))


def test_unit_density_reproduces_the_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=2)
    x = torch.randn(1, 4, 7, 7)
    torch.testing.assert_close(WeightedConv2d.from_conv(conv)(x), conv(x))


def test_trainable_parameter_count():
    conv = nn.Conv2d(8, 16, 5, padding=2)
    conv_count = sum(p.numel() for p in conv.parameters())
    fixed = WeightedConv2d.from_conv(conv, density=0.9, density_2=1.1)
    assert fixed.training_parameter_count() == conv_count
    assert "density" in fixed.state_dict() and not fixed.density.requires_grad
    learned = WeightedConv2d.from_conv(conv, density=0.9, density_2=1.1, learnable=True)
    assert learned.training_parameter_count() == conv_count + 2  # d at distances 1 and 2
    assert sum(p.numel() for p in learned.collapse().parameters()) == conv_count


def test_learnable_density_trains_and_fixed_does_not():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    for learnable in (False, True):
        op = WeightedConv2d(3, 3, 3, padding=1, density=0.8, learnable=learnable)
        optimizer = torch.optim.SGD([p for p in op.parameters() if p.requires_grad], lr=0.1)
        op(x).square().mean().backward()
        optimizer.step()
        assert (op.density.item() != pytest.approx(0.8)) == learnable


def test_density_survives_state_dict_round_trip():
    op = WeightedConv2d(2, 2, 5, padding=2, density=0.6, density_2=1.4)
    fresh = WeightedConv2d(2, 2, 5, padding=2)  # defaults: density 1
    fresh.load_state_dict(op.state_dict())
    torch.testing.assert_close(fresh.effective_weight(), op.effective_weight())


def test_a_fixed_density_mask_is_kept_until_the_density_changes():
    op = WeightedConv2d(2, 2, 3, padding=1)  # density 1: mask of ones
    assert op.mask() is op.mask()  # computed once
    assert torch.equal(op.mask(), torch.ones(3, 3))
    op.load_state_dict(WeightedConv2d(2, 2, 3, padding=1, density=0.5).state_dict())
    assert op.mask()[0, 0].item() == 0.25  # the loaded density, not the cached one
    with torch.no_grad():
        op.density.fill_(2.0)
    assert op.mask()[0, 0].item() == 4.0
    op.double()
    assert op.mask().dtype == torch.float64 and op.effective_weight().dtype == torch.float64


def test_eligibility_messages():
    def reason(**kwargs):
        return WeightedConv2d.eligibility(ConvSpec.create(4, 4, **kwargs))

    assert reason(kernel_size=3, padding=1) is None
    assert reason(kernel_size=3, stride=2, groups=4) is None
    assert reason(kernel_size=7, dilation=2) is None
    assert "1x1" in reason(kernel_size=1)
    assert "even" in reason(kernel_size=2)
    assert "7x7" in reason(kernel_size=9)
    with pytest.raises(ValueError, match="even"):
        WeightedConv2d.from_conv(nn.Conv2d(4, 4, 4))


def test_param_schema():
    schema = {p.name: p for p in WeightedConv2d.params}
    assert set(schema) == {"density", "density_2", "density_3", "learnable"}
    assert (schema["density"].low, schema["density"].high) == (0.5, 1.5)  # the paper's 3x3 range
    with pytest.raises(ValueError, match="density"):
        WeightedConv2d.validate_params({"density": 2.0})
