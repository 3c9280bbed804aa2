"""Costs of an exported (TorchScript) model, counted from the file itself: one forward pass at batch 1 under a
dispatch mode that sees every aten op with its real shapes.

The conventions are ``nas.cost``'s (pycls; DESIGN.md "Cost conventions"): ``macs`` are the multiply-adds of
convolutions, linears and matmuls; ``flops`` add one addition per output element of a layer with a bias;
``acts`` are output elements of convolutions, linears and non-global pooling; ``params`` the parameters the
file holds. An op that does work the counter does not model (transposed or 1-D/3-D convolutions, attention...)
is listed under ``unknown_ops``, never counted as zero silently.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
Cost = tuple[int, int, int]  # flops, macs, acts


def _numel(tensor: torch.Tensor) -> int:
    return math.prod(tensor.shape)


def _conv(args: Sequence[Any], kwargs: dict[str, Any], out: torch.Tensor) -> Cost | None:
    """aten.conv2d(input, weight, bias, stride, padding, dilation, groups) and aten.convolution(...)."""
    weight, bias = args[1], args[2] if len(args) > 2 else kwargs.get("bias")
    if weight.dim() != 4 or (len(args) > 6 and args[6] is True):  # not 2-D, or transposed (convolution)
        return None
    macs = _numel(out) * math.prod(weight.shape[1:])  # (C_in / groups) * kh * kw per output element
    return macs + (_numel(out) if bias is not None else 0), macs, _numel(out)


def _linear(args: Sequence[Any], kwargs: dict[str, Any], out: torch.Tensor) -> Cost:
    """aten.linear(input, weight, bias): every output element costs in_features multiply-adds."""
    weight, bias = args[1], args[2] if len(args) > 2 else kwargs.get("bias")
    macs = _numel(out) * weight.shape[-1]
    return macs + (_numel(out) if bias is not None else 0), macs, _numel(out)


def _addmm(args: Sequence[Any], kwargs: dict[str, Any], out: torch.Tensor) -> Cost:
    """aten.addmm(bias, input, weight.T): a linear layer with a bias."""
    macs = _numel(out) * args[1].shape[-1]
    return macs + _numel(out), macs, _numel(out)


def _matmul(args: Sequence[Any], kwargs: dict[str, Any], out: torch.Tensor) -> Cost:
    macs = _numel(out) * args[0].shape[-1]
    return macs, macs, 0


def _pool(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> Cost:
    out = out[0] if isinstance(out, (tuple, list)) else out  # max_pool2d_with_indices: (values, indices)
    is_global = all(size == 1 for size in out.shape[2:])
    return 0, 0, 0 if is_global else _numel(out)


RULES: dict[Any, Callable[[Sequence[Any], dict[str, Any], Any], Cost | None]] = {
    aten.conv2d: _conv,
    aten.convolution: _conv,
    aten._convolution: _conv,
    aten.linear: _linear,
    aten.addmm: _addmm,
    aten.mm: _matmul,
    aten.bmm: _matmul,
    aten.matmul: _matmul,
    aten.max_pool2d: _pool,
    aten.max_pool2d_with_indices: _pool,
    aten.avg_pool2d: _pool,
    aten.adaptive_avg_pool2d: _pool,
    aten._adaptive_avg_pool2d: _pool,
    aten.adaptive_max_pool2d: _pool,
}
# Ops that do multiply-add work outside the conventions above: listed, not counted.
NOT_MODELLED = {
    aten.conv1d,
    aten.conv3d,
    aten.conv_transpose1d,
    aten.conv_transpose2d,
    aten.conv_transpose3d,
    aten.einsum,
    aten.baddbmm,
    aten.addbmm,
    aten.scaled_dot_product_attention,
    aten.max_pool1d,
    aten.max_pool3d,
    aten.avg_pool1d,
    aten.avg_pool3d,
    aten.adaptive_avg_pool1d,
    aten.adaptive_avg_pool3d,
}


class CostMode(TorchDispatchMode):
    """Counts flops, macs and acts of the aten ops run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = self.macs = self.acts = 0
        self.unknown: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is aten.item.default and not isinstance(args[0], torch.Tensor):
            return args[0]  # a traced 0-dim constant reaches Python dispatch as a plain number already
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        rule = RULES.get(packet)
        cost = rule(args, kwargs, out) if rule is not None else None
        if cost is not None:
            self.flops += cost[0]
            self.macs += cost[1]
            self.acts += cost[2]
        elif rule is not None or packet in NOT_MODELLED:
            self.unknown[str(packet)] += 1
        return out


def count_exported(module: torch.nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """``flops``, ``macs``, ``acts``, ``params`` and ``unknown_ops`` of ``module`` (a loaded export) on one
    input of ``input_shape`` (C, H, W), batch 1 as ``nas.cost`` counts."""
    x = torch.zeros(1, *input_shape)
    mode = CostMode()
    with torch.inference_mode(), mode:
        module(x)
    params = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    return dict(
        flops=mode.flops, macs=mode.macs, acts=mode.acts, params=params, unknown_ops=dict(mode.unknown)
    )
