"""``complex``: a complex-valued convolution inside a real network.

Channel layout (per group): of a group's ``C`` real channels, the first ``C / 2`` hold the real parts and the last
``C / 2`` the imaginary parts of ``C / 2`` complex channels, for the input and the output alike. Group ``g``'s
complex input channel ``j`` is ``x[g * C_in + j] + i x[g * C_in + C_in / 2 + j]`` (``C_in`` = in / groups).

The layer is ``z -> W * z + b`` with complex weight ``W = W_r + i W_i`` and complex bias ``b = b_r + i b_i``:
``y_r = W_r * x_r - W_i * x_i + b_r``, ``y_i = W_i * x_r + W_r * x_i + b_i`` (Trabelsi et al. 2018, "Deep Complex
Networks"; the bias is ``b_r + i b_i``, not complexPyTorch's ``(b_r - b_i) + i (b_r + b_i)``). It is therefore one
real conv with, per group, the block weight ``[[W_r, -W_i], [W_i, W_r]]`` and bias ``[b_r; b_i]``: that is what
``forward`` runs and what ``collapse()`` returns, with the replaced conv's in/out channels and groups.

``input_mode``: ``complex`` (the layout above, needs an even channel count per group), ``lift`` (every input
channel is a real part with a zero imaginary part, so odd counts such as an RGB stem work: ``y_r = W_r * x + b_r``,
``y_i = W_i * x + b_i``), or ``auto`` (``lift`` exactly when the input channels per group are odd). The output
always needs an even channel count per group; odd output channels cannot be represented.

Parameter count at equal width (``k`` = kernel area, per group ``C_in`` in, ``C_out`` out): ``complex`` holds
``2 * (C_out / 2) * (C_in / 2) * k = C_out * C_in * k / 2`` weights, half a real conv's; ``lift`` holds
``C_out * C_in * k``, as many as the real conv; the bias is ``C_out`` in both. The collapsed conv costs what the
replaced conv costs.

``from_conv``: ``lift`` takes ``W_r``, ``W_i``, ``b_r``, ``b_i`` from the conv's output halves, reproducing the conv
exactly. ``complex`` takes the block weight nearest to the conv's in Frobenius norm: with the conv's per-group
blocks ``[[A, B], [C, D]]``, ``W_r = (A + D) / 2`` and ``W_i = (C - B) / 2`` (the orthogonal projection onto the
block structure; exact when the conv already has it); the bias is copied exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .base import ConvOperator
from .functional import conv2d, make_conv
from .init import conv_bias_init_
from .params import ParamSpec
from .registry import register
from .spec import ConvSpec

INPUT_MODES = ("auto", "complex", "lift")


def resolve_input_mode(spec: ConvSpec, input_mode: str = "auto") -> str:
    """``complex`` or ``lift``: ``auto`` lifts exactly when the input channels per group are odd."""
    if input_mode == "auto":
        return "lift" if (spec.in_channels // spec.groups) % 2 else "complex"
    return input_mode


@register
class ComplexConv2d(ConvOperator):
    """A complex conv on real tensors whose channels are split, per group, into real and imaginary halves."""

    name = "complex"
    summary = "complex-valued conv on channels split into real and imaginary halves (per group)"
    params = (
        ParamSpec(
            "input_mode",
            "categorical",
            "auto",
            choices=INPUT_MODES,
            help="complex: input split into real/imaginary halves; lift: real input, imaginary part zero "
            "(odd input channels, e.g. an RGB stem); auto: lift exactly when input channels per group are odd",
        ),
    )
    example_params = ({}, {"input_mode": "lift"})

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        input_mode: str = "auto",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        )
        checked = self.validate_params(dict(input_mode=input_mode))
        reason = self.eligibility(self.spec, **checked)
        if reason is not None:
            raise ValueError(f"complex: {reason}")
        s = self.spec
        self.input_mode: str = resolve_input_mode(s, checked["input_mode"])
        self.in_per_group, self.out_per_group = s.in_channels // s.groups, s.out_channels // s.groups
        complex_in = self.in_per_group if self.input_mode == "lift" else self.in_per_group // 2
        shape = (s.groups * self.out_per_group // 2, complex_in, *s.kernel_size)  # (G * out/2, in', k_h, k_w)
        self.weight_real = nn.Parameter(torch.empty(shape))
        self.weight_imag = nn.Parameter(torch.empty(shape))
        # the collapsed conv's default init: uniform(+-1/sqrt(fan_in)) with its real fan-in
        fan_in = self.in_per_group * s.kernel_size[0] * s.kernel_size[1]
        for weight in (self.weight_real, self.weight_imag):
            nn.init.uniform_(weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        if s.bias:
            self.bias_real = nn.Parameter(conv_bias_init_(torch.empty(s.out_channels // 2), fan_in))
            self.bias_imag = nn.Parameter(conv_bias_init_(torch.empty(s.out_channels // 2), fan_in))
        else:
            self.bias_real = self.bias_imag = None

    @classmethod
    def eligibility(cls, spec: ConvSpec, **params: Any) -> str | None:
        input_mode = cls.validate_params(params).get("input_mode", "auto")
        in_per_group, out_per_group = spec.in_channels // spec.groups, spec.out_channels // spec.groups
        if out_per_group % 2:
            return (
                f"{out_per_group} output channel(s) per group is odd: a complex output needs a real and an "
                "imaginary channel for each complex channel, so odd output channels cannot be represented"
            )
        if resolve_input_mode(spec, input_mode) == "complex" and in_per_group % 2:
            return (
                f"{in_per_group} input channel(s) per group is odd and cannot be split into real and imaginary "
                "halves; use input_mode 'lift' (imaginary part zero) or 'auto'"
            )
        return None

    def load_conv_weights(self, conv: nn.Conv2d) -> None:
        s = self.spec
        half_out, half_in = self.out_per_group // 2, self.in_per_group // 2
        weight = conv.weight.reshape(s.groups, self.out_per_group, self.in_per_group, *s.kernel_size)
        if self.input_mode == "lift":
            real, imag = weight[:, :half_out], weight[:, half_out:]
        else:
            real = (weight[:, :half_out, :half_in] + weight[:, half_out:, half_in:]) / 2
            imag = (weight[:, half_out:, :half_in] - weight[:, :half_out, half_in:]) / 2
        self.weight_real.copy_(real.reshape(self.weight_real.shape))
        self.weight_imag.copy_(imag.reshape(self.weight_imag.shape))
        if self.bias_real is not None:
            bias = conv.bias.reshape(s.groups, self.out_per_group)
            self.bias_real.copy_(bias[:, :half_out].reshape(-1))
            self.bias_imag.copy_(bias[:, half_out:].reshape(-1))

    def real_weight(self) -> torch.Tensor:
        """The equivalent real kernel (out, in / groups, k_h, k_w): per group ``[[W_r, -W_i], [W_i, W_r]]``."""
        s = self.spec
        # (G, o, i, k_h, k_w) with o = out_per_group / 2
        real = self.weight_real.reshape(s.groups, self.out_per_group // 2, -1, *s.kernel_size)
        imag = self.weight_imag.reshape(s.groups, self.out_per_group // 2, -1, *s.kernel_size)
        if self.input_mode == "lift":
            block = torch.cat([real, imag], dim=1)  # (G, 2o, in, kh, kw)
        else:
            top = torch.cat([real, -imag], dim=2)  # (G, o, 2i, kh, kw)
            bottom = torch.cat([imag, real], dim=2)
            block = torch.cat([top, bottom], dim=1)  # (G, 2o, 2i, kh, kw)
        return block.reshape(s.out_channels, self.in_per_group, *s.kernel_size)

    def real_bias(self) -> torch.Tensor | None:
        """The equivalent real bias (out,): per group ``[b_r; b_i]``."""
        if self.bias_real is None:
            return None
        groups = self.spec.groups
        bias = torch.cat([self.bias_real.reshape(groups, -1), self.bias_imag.reshape(groups, -1)], dim=1)
        return bias.reshape(-1)  # (G * out_per_group,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        weight = self.derived("kernel", self.real_weight, self.weight_real, self.weight_imag)
        bias = (
            self.derived("bias", self.real_bias, self.bias_real, self.bias_imag)
            if self.bias_real is not None
            else None
        )
        return conv2d(x, weight, bias, self.spec)

    def collapse(self) -> nn.Conv2d:
        with torch.no_grad():
            return make_conv(self.spec, self.real_weight(), self.real_bias())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_mode={self.input_mode!r}"
