"""``ConvOperator.derived``: a kept kernel is served only while everything it was built from is unchanged
(``operators.derived``). Each test changes one thing the kernel depends on and checks that the next eval
output is the operator's own (its collapsed conv's), never the kernel kept from before."""

from __future__ import annotations

import copy
import gc
import pickle

import pytest
import torch
from torch import nn

import operators
from operators.derived import DerivedCache, settings
from operators.init import kaiming_uniform_


def _check(op: operators.ConvOperator, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(op(x), op.collapse()(x), rtol=1e-5, atol=1e-6)


def _lora() -> operators.ConvLoRA2d:
    torch.manual_seed(0)
    op = operators.ConvLoRA2d(4, 4, 3, padding=1, rank=2).eval()
    with torch.no_grad():
        nn.init.normal_(op.lora_B)
    return op


def test_kept_while_nothing_changes_and_rebuilt_after_an_in_place_change():
    op, x = _lora(), torch.randn(1, 4, 6, 6)
    built = []
    with torch.no_grad():
        first = op.derived("probe", lambda: built.append(1) or op.weight * 2, op.weight)
        again = op.derived("probe", lambda: built.append(1) or op.weight * 2, op.weight)
        assert again is first and len(built) == 1
        op.weight.add_(1.0)  # an optimizer step, load_state_dict: in place, under no_grad
        op.derived("probe", lambda: built.append(1) or op.weight * 2, op.weight)
    assert len(built) == 2
    _check(op, x)


def test_a_setting_of_the_operator_is_part_of_the_key():
    op, x = _lora(), torch.randn(1, 4, 6, 6)
    _check(op, x)
    op.scaling = 3.0  # alpha / rank changed after the first forward: the kept kernel is stale
    _check(op, x)


def test_a_setting_of_a_submodule_is_part_of_the_key():
    torch.manual_seed(0)
    op = operators.LargeKernelConv2d(3, 3, 3, padding=1, groups=3, large_kernel_size=5).eval()
    x = torch.randn(1, 3, 8, 8)
    _check(op, x)
    op.norms[1].eps = 0.5  # the fused kernel divides by sqrt(var + eps)
    _check(op, x)


def test_dtype_and_device_moves_rebuild():
    op, x = _lora(), torch.randn(1, 4, 6, 6)
    _check(op, x)
    op.double()
    with torch.no_grad():
        y = op(x.double())
    assert y.dtype == torch.float64
    _check(op, x.double())


def test_a_replaced_parameter_never_matches_its_predecessor():
    """Same shape, same version counter, and (as the allocator often does) the same address: only its identity
    tells the new weight from the old one."""
    torch.manual_seed(0)
    op = operators.WeightedConv2d(4, 4, 3, padding=1, density=0.7).eval()
    x = torch.randn(1, 4, 6, 6)
    _check(op, x)
    shape = op.weight.shape
    del op.weight
    gc.collect()
    op.weight = nn.Parameter(kaiming_uniform_(torch.empty(shape)))  # version 1, as the old one's
    _check(op, x)


def test_inference_mode_then_training():
    """A kernel kept in inference mode is an inference tensor, which autograd refuses: it is not served outside."""
    op = operators.WeightedConv2d(3, 3, 3, padding=1, density=0.8)  # a fixed density: its mask is kept
    with torch.inference_mode():
        op(torch.randn(1, 3, 5, 5))
    op(torch.randn(1, 3, 5, 5)).sum().backward()
    assert op.weight.grad is not None


def test_training_flag_is_part_of_the_key():
    op = _lora()
    with torch.no_grad():
        first = op.derived("probe", lambda: op.weight.clone(), op.weight)
        op.train()
        assert op.derived("probe", lambda: op.weight.clone(), op.weight) is not first


def test_not_kept_while_autograd_needs_the_graph_or_while_tracing():
    op = _lora()
    built = []
    op.derived("probe", lambda: built.append(1) or op.lora_B * 1, op.lora_B)  # grad enabled, requires grad
    op.derived("probe", lambda: built.append(1) or op.lora_B * 1, op.lora_B)
    assert len(built) == 2
    with torch.no_grad():
        op(torch.randn(1, 4, 6, 6))  # a kernel kept before tracing must not enter the trace as a constant
        traced = torch.jit.trace(op, torch.randn(1, 4, 6, 6), check_trace=False)
    with torch.no_grad():
        op.lora_B.add_(1.0)
        x = torch.randn(1, 4, 6, 6)
        traced_params = dict(traced.named_parameters())
        traced_params["lora_B"].add_(1.0)
        torch.testing.assert_close(traced(x), op(x))  # the trace computes its kernel, it did not bake it in


def test_pickle_and_deepcopy_leave_the_kept_values_behind():
    op, x = _lora(), torch.randn(1, 4, 6, 6)
    _check(op, x)
    assert len(op.__dict__["_derived_cache"]) > 0
    for other in (copy.deepcopy(op), pickle.loads(pickle.dumps(op))):
        assert "_derived_cache" not in other.__dict__
        with torch.no_grad():
            other.lora_B.mul_(2.0)
        _check(other, x)
    _check(op, x)


def test_settings_cover_plain_attributes_of_every_module():
    op = operators.LargeKernelConv2d(3, 3, 3, padding=1, groups=3, large_kernel_size=5)
    found = settings(op)
    assert "large_kernel_size" in found[0] and "training" in found[0]
    assert sum(1 for item in found if isinstance(item, tuple) and "eps" in item) == len(op.norms)
    cache = DerivedCache()
    assert len(cache) == 0


@pytest.mark.parametrize("name", operators.names())
def test_every_operator_serves_its_own_kernel_after_a_settings_change_of_any_parameter(name):
    """Any operator: after the first eval forward, moving every parameter and calling ``.double()`` still gives
    its collapsed conv's output."""
    cls = operators.get(name)
    geometry = dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=2)
    params = next(
        (
            p
            for p in cls.example_params
            if cls.eligibility(operators.ConvSpec.create(**geometry), **p) is None
        ),
        None,
    )
    if params is None:
        pytest.skip(f"{name}: no example parameters fit a grouped 3x3 conv")
    torch.manual_seed(0)
    op = cls.from_conv(nn.Conv2d(**geometry), **params).eval()
    x = torch.randn(1, 4, 7, 7)
    _check(op, x)
    with torch.no_grad():
        for p in op.parameters():
            p.add_(0.01)
    _check(op, x)
    op.double()
    _check(op, x.double())
