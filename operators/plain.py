"""``conv``: the plain convolution, so that "keep this conv" is a choice of the search space."""

from __future__ import annotations

import torch
from torch import nn

from .base import ConvOperator, conv2d, conv_bias_init_, kaiming_uniform_, make_conv
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
        s = self.spec
        self.weight = nn.Parameter(torch.empty(s.out_channels, s.in_channels // s.groups, *s.kernel_size))
        self.bias = nn.Parameter(torch.empty(s.out_channels)) if s.bias else None
        kaiming_uniform_(self.weight)
        if self.bias is not None:
            conv_bias_init_(self.bias, self.weight[0].numel())

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        self.weight.copy_(conv.weight)
        if self.bias is not None:
            self.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return conv2d(x, self.weight, self.bias, self.spec)

    def collapse(self) -> nn.Conv2d:
        return make_conv(self.spec, self.weight, self.bias)
