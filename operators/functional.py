"""Running and making a plain convolution with a ``ConvSpec``'s geometry: ``conv2d`` and ``make_conv``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import ConvSpec


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: ConvSpec) -> torch.Tensor:
    """``nn.Conv2d``'s forward for a computed ``weight`` (out, in/groups, kh, kw) under ``spec``'s geometry."""
    symmetric = spec.symmetric_padding
    if spec.padding_mode == "zeros" and symmetric is not None:
        return F.conv2d(x, weight, bias, spec.stride, symmetric, spec.dilation, spec.groups)
    mode = "constant" if spec.padding_mode == "zeros" else spec.padding_mode
    x = F.pad(x, spec.padding, mode=mode)
    return F.conv2d(x, weight, bias, spec.stride, 0, spec.dilation, spec.groups)


def make_conv(spec: ConvSpec, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with ``spec``'s geometry holding copies of ``weight`` and ``bias``."""
    kwargs = spec.conv_kwargs()
    kwargs["bias"] = bias is not None
    conv = nn.Conv2d(**kwargs, device=weight.device, dtype=weight.dtype)
    if tuple(conv.weight.shape) != tuple(weight.shape):
        raise ValueError(
            f"collapsed weight has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}"
        )
    with torch.no_grad():
        conv.weight.copy_(weight.detach())
        if bias is not None:
            conv.bias.copy_(bias.detach())
    return conv
