"""``conv_lora``: low-rank adaptation of a convolution (LoRA, Hu et al. 2021, applied to conv kernels).

``W = W0 + (alpha / rank) * reshape(B @ A)`` with ``A`` (rank, in/groups * kh * kw) Kaiming-initialized and
``B`` (out, rank) zero-initialized, so the operator equals the replaced conv before training. ``W0`` and the
bias are the replaced conv's, frozen unless ``train_base=True``. The geometry is the replaced conv's in full:
groups (the update has the grouped kernel's shape), dilation and every padding mode.

``collapse()`` returns a new conv holding the summed kernel and never merges into ``W0``: a state dict saved
after collapsing still holds the unmerged ``W0``, so reloading it cannot count the update twice.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ConvOperator
from .functional import conv2d, make_conv
from .init import conv_parameters, copy_conv_, kaiming_uniform_
from .params import ParamSpec
from .registry import register


@register
class ConvLoRA2d(ConvOperator):
    """A frozen conv plus a trainable low-rank kernel update ``(alpha / rank) * B @ A``."""

    name = "conv_lora"
    summary = "W0 + (alpha / rank) * B @ A, W0 the replaced conv's weight (frozen), B zero-init"
    params = (
        ParamSpec("rank", "int", 4, low=1, high=64, log=True, help="rank of the kernel update"),
        ParamSpec(
            "alpha", "float", 4.0, low=1.0, high=64.0, log=True, help="the update is scaled by alpha / rank"
        ),
        ParamSpec("train_base", "bool", False, help="also train W0 and the bias"),
    )
    example_params = (
        {"rank": 2, "alpha": 4.0},
        {"rank": 3, "alpha": 1.5, "train_base": True},
    )

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
        *,
        rank: int = 4,
        alpha: float = 4.0,
        train_base: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        if rank < 1:
            raise ValueError(f"conv_lora: rank must be >= 1, got {rank}")
        s = self.spec
        fan_in = s.in_channels // s.groups * s.kernel_size[0] * s.kernel_size[1]
        self.rank, self.alpha, self.train_base = int(rank), float(alpha), bool(train_base)
        self.scaling = self.alpha / self.rank
        # W0: (O, I/g, kh, kw) and the bias, frozen unless train_base
        self.weight, self.bias = conv_parameters(s, requires_grad=self.train_base)
        self.lora_A = nn.Parameter(kaiming_uniform_(torch.empty(self.rank, fan_in)))  # (r, I/g * kh * kw)
        self.lora_B = nn.Parameter(torch.zeros(s.out_channels, self.rank))  # (O, r)

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        """``W0`` and the bias are the conv's; ``B = 0`` keeps the output unchanged until training moves it."""
        copy_conv_(self.weight, self.bias, conv)

    def delta_weight(self) -> torch.Tensor:
        """``(alpha / rank) * reshape(B @ A)``, shape (O, I/g, kh, kw)."""
        return (self.lora_B @ self.lora_A).view_as(self.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        kernel = self.derived(
            "kernel", lambda: self.weight + self.delta_weight(), self.weight, self.lora_A, self.lora_B
        )
        return conv2d(x, kernel, self.bias, self.spec)

    def collapse(self) -> nn.Conv2d:
        with torch.no_grad():  # a new conv; self.weight is never touched
            return make_conv(self.spec, self.weight + self.delta_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}, train_base={self.train_base}"
