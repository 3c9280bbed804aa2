"""``conv_lora``: zero-init identity, frozen base, full geometry (groups, dilation, padding modes), scaling by
hand, and no double counting of the update across collapse / save / reload."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from operators import ConvSpec
from operators.conv_lora import ConvLoRA2d


def _pretrained_like_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(16, 16, 5, padding="same", padding_mode="replicate"),
        nn.Conv2d(16, 4, 1),
    )
    with torch.no_grad():  # move weights away from the default init, as a trained model's would be
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _set_update_(op: ConvLoRA2d, seed: int = 1) -> None:
    """What training would do: move B (and A) off their initial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        op.lora_B.copy_(torch.randn(op.lora_B.shape, generator=gen, dtype=op.lora_B.dtype))
        op.lora_A.add_(torch.randn(op.lora_A.shape, generator=gen, dtype=op.lora_A.dtype))


def _expected_kernel(op: ConvLoRA2d) -> torch.Tensor:
    return op.weight + op.alpha / op.rank * (op.lora_B @ op.lora_A).reshape(op.weight.shape)


def test_rewriting_a_pretrained_model_leaves_its_output_unchanged():
    model = _pretrained_like_model()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        before = model(x)
    for index, module in enumerate(model):
        if isinstance(module, nn.Conv2d):
            model[index] = ConvLoRA2d.from_conv(module, rank=4, alpha=8.0)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_initialization_a_kaiming_b_zero():
    op = ConvLoRA2d(6, 8, 3, groups=2, rank=5)
    assert op.lora_A.shape == (5, 3 * 3 * 3)  # (rank, in/groups * kh * kw)
    assert op.lora_B.shape == (8, 5)  # (out, rank)
    assert torch.count_nonzero(op.lora_B) == 0
    bound = 1 / (27**0.5)  # kaiming_uniform_(a=sqrt(5)) on fan_in 27
    assert op.lora_A.abs().max() <= bound and op.lora_A.std() > bound / 4


def test_base_is_frozen_by_default():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    op = ConvLoRA2d.from_conv(conv, rank=2)
    assert not op.weight.requires_grad and not op.bias.requires_grad
    fan_in = 4 * 3 * 3
    assert op.training_parameter_count() == 2 * (fan_in + 6)
    optimizer = torch.optim.SGD([p for p in op.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        op(torch.randn(2, 4, 6, 6)).square().mean().backward()
        optimizer.step()
    assert torch.equal(op.weight, conv.weight) and torch.equal(op.bias, conv.bias)
    assert torch.count_nonzero(op.lora_B) > 0  # the update moved


def test_train_base_unfreezes_weight_and_bias():
    op = ConvLoRA2d(4, 6, 3, rank=2, train_base=True)
    assert op.weight.requires_grad and op.bias.requires_grad
    assert op.training_parameter_count() == 2 * (36 + 6) + 6 * 36 + 6


def test_scaling_by_hand():
    op = ConvLoRA2d(1, 1, 1, bias=False, rank=1, alpha=3.0)
    with torch.no_grad():
        op.weight.fill_(0.25)
        op.lora_A.fill_(2.0)
        op.lora_B.fill_(0.5)
    # W = W0 + (alpha / rank) * B @ A = 0.25 + 3 * 0.5 * 2 = 3.25
    assert op.collapse().weight.item() == 3.25
    assert op(torch.ones(1, 1, 1, 1)).item() == 3.25


@pytest.mark.parametrize(
    "conv_kwargs",
    [
        dict(kernel_size=3, padding=2, dilation=2, padding_mode="reflect"),
        dict(kernel_size=3, padding=3, dilation=3, groups=2, padding_mode="circular"),
        dict(kernel_size=(3, 5), padding=(1, 4), dilation=(1, 2), padding_mode="replicate"),
        dict(kernel_size=3, stride=2, padding="valid", groups=4),
    ],
)
def test_dilation_groups_and_padding_modes_are_kept(conv_kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, **conv_kwargs).double()
    op = ConvLoRA2d.from_conv(conv, rank=3, alpha=6.0)
    assert ConvSpec.from_conv(op.collapse()) == ConvSpec.from_conv(conv)
    _set_update_(op)
    reference = nn.Conv2d(4, 8, **conv_kwargs).double()  # nn.Conv2d's own geometry with the summed kernel
    with torch.no_grad():
        reference.weight.copy_(_expected_kernel(op))
        reference.bias.copy_(conv.bias)
    x = torch.randn(2, 4, 11, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(op(x), reference(x))
        torch.testing.assert_close(op.collapse()(x), reference(x))


def test_no_double_counting_after_save_reload_collapse():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    op = ConvLoRA2d.from_conv(conv, rank=2, alpha=4.0)
    _set_update_(op)
    expected = _expected_kernel(op).detach().clone()
    base = op.weight.detach().clone()

    first = op.collapse()
    second = op.collapse()  # collapsing twice must not add the update twice
    assert torch.equal(op.weight, base)
    torch.testing.assert_close(first.weight, expected)
    torch.testing.assert_close(second.weight, expected)

    buffer = io.BytesIO()
    torch.save(op.state_dict(), buffer)  # saved after collapsing: still the unmerged W0
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert torch.equal(state["weight"], base)
    fresh = ConvLoRA2d(**ConvSpec.from_conv(conv).conv_kwargs(), rank=2, alpha=4.0)
    fresh.load_state_dict(state)
    reloaded = fresh.collapse()
    torch.testing.assert_close(reloaded.weight, expected)
    double = base + 2 * (expected - base)
    assert not torch.allclose(reloaded.weight, double)
    x = torch.randn(1, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), first(x))


def test_collapse_returns_independent_tensors():
    op = ConvLoRA2d(3, 3, 3, rank=1)
    collapsed = op.collapse()
    with torch.no_grad():
        collapsed.weight.add_(1.0)
        collapsed.bias.add_(1.0)
    assert not torch.allclose(op.collapse().weight, collapsed.weight)
    assert collapsed.bias.data_ptr() != op.bias.data_ptr()


def test_every_conv_is_eligible():
    spec = ConvSpec.create(6, 6, 3, stride=2, padding=2, dilation=2, groups=3, padding_mode="circular")
    assert ConvLoRA2d.eligibility(spec) is None
