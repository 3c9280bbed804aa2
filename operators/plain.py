"""``conv``: the plain convolution, so that "keep this conv" is a choice of the search space."""

from __future__ import annotations

import torch
from torch import nn

from .base import ConvOperator
from .functional import conv2d, make_conv
from .init import conv_parameters, copy_conv_
from .registry import register


@register
class PlainConv2d(ConvOperator):
    """``nn.Conv2d`` under the operator contract (same parameter names, so state dicts interchange)."""

    name = "conv"
    summary = "plain convolution (keep the conv as it is)"

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        self.weight, self.bias = conv_parameters(self.spec)

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        copy_conv_(self.weight, self.bias, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return conv2d(x, self.weight, self.bias, self.spec)

    def collapse(self) -> nn.Conv2d:
        return make_conv(self.spec, self.weight, self.bias)
