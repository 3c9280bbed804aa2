"""``ConvSpec``: the arguments of one 2-D convolution, validated and normalized. Imports torch only."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _pair(value: int | tuple[int, ...], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return (value[0], value[0])
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvSpec:
    """The arguments of one 2-D convolution, normalized (pairs everywhere, padding resolved to ints)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (F.pad order)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"

    @staticmethod
    def create(
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> ConvSpec:
        """Validate and normalize ``nn.Conv2d``-style arguments."""
        kernel = _pair(kernel_size, "kernel_size")
        stride_ = _pair(stride, "stride")
        dilation_ = _pair(dilation, "dilation")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if isinstance(padding, str):
            if padding == "valid":
                pads = (0, 0, 0, 0)
            elif padding == "same":
                if stride_ != (1, 1):
                    raise ValueError("padding='same' is not supported for strided convolutions")
                pads = _same_padding(kernel, dilation_)
            else:
                raise ValueError(f"padding must be 'same', 'valid', an int or a pair, got {padding!r}")
        else:
            ph, pw = _pair(padding, "padding")
            pads = (pw, pw, ph, ph)
        return ConvSpec(
            in_channels, out_channels, kernel, stride_, pads, dilation_, groups, bool(bias), padding_mode
        )

    @staticmethod
    def from_conv(conv: nn.Conv2d) -> ConvSpec:
        return ConvSpec.create(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
        )

    @property
    def symmetric_padding(self) -> tuple[int, int] | None:
        """(pad_h, pad_w) when the padding is symmetric, else None."""
        left, right, top, bottom = self.padding
        return (top, left) if left == right and top == bottom else None

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.in_channels and self.groups > 1

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial output size for an input of ``height`` x ``width`` (nn.Conv2d's formula)."""
        left, right, top, bottom = self.padding
        out_h = (height + top + bottom - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[
            0
        ] + 1
        out_w = (width + left + right - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[
            1
        ] + 1
        return out_h, out_w

    def conv_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nn.Conv2d`` (or any operator) reproducing this spec."""
        padding: Any = self.symmetric_padding
        if padding is None:  # only 'same' with an even effective kernel gets here
            padding = "same"
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            padding_mode=self.padding_mode,
        )

    def with_(self, **changes: Any) -> ConvSpec:
        return replace(self, **changes)


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """nn.Conv2d's 'same' padding: total d*(k-1), the extra pixel on the right/bottom."""
    pads = []
    for k, d in zip(reversed(kernel), reversed(dilation)):  # width first (F.pad order)
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]
