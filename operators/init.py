"""Initialization as ``nn.Conv2d`` does it, and copying a replaced conv's weights into an operator.

``conv_parameters`` is the one place an operator makes a conv-shaped weight and bias: Kaiming-uniform with
``a = sqrt(5)`` and a bias uniform in ``+-1 / sqrt(fan_in)``, drawn in ``nn.Conv2d``'s order (weight, then
bias), so an operator seeded like a conv starts with that conv's values. ``copy_conv_`` copies a conv's weight
and bias into an operator's (under ``no_grad``, as ``from_conv`` calls ``load_conv_weights``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .spec import ConvSpec


def kaiming_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """``nn.Conv2d``'s default weight initialization."""
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


def conv_bias_init_(bias: torch.Tensor, fan_in: int) -> torch.Tensor:
    """``nn.Conv2d``'s default bias initialization for a layer with ``fan_in`` inputs per output."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    return nn.init.uniform_(bias, -bound, bound)


def conv_parameters(
    spec: ConvSpec,
    kernel_size: tuple[int, int] | None = None,
    *,
    bias: bool | None = None,
    requires_grad: bool = True,
) -> tuple[nn.Parameter, nn.Parameter | None]:
    """A weight (out, in / groups, kh, kw) and a bias (out,) or None, initialized as ``nn.Conv2d`` initializes
    them. ``kernel_size`` defaults to the spec's, ``bias`` to whether the spec has one."""
    kh, kw = kernel_size or spec.kernel_size
    weight = kaiming_uniform_(torch.empty(spec.out_channels, spec.in_channels // spec.groups, kh, kw))
    with_bias = spec.bias if bias is None else bias
    bias_ = conv_bias_init_(torch.empty(spec.out_channels), weight[0].numel()) if with_bias else None
    return (
        nn.Parameter(weight, requires_grad=requires_grad),
        None if bias_ is None else nn.Parameter(bias_, requires_grad=requires_grad),
    )


def copy_conv_(weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d) -> None:
    """Copy ``conv``'s weight into ``weight`` and, where both have one, its bias into ``bias`` (in place)."""
    weight.copy_(conv.weight)
    if bias is not None and conv.bias is not None:
        bias.copy_(conv.bias)
