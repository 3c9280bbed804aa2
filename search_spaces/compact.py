"""A compact CNN for quick searches: dense 3x3 convs and MobileNet-style depthwise-separable blocks.

Every operator of the library finds convs it can replace here: dense 3x3 convs (stem, per-stage entry) and
stride-1 depthwise 3x3 convs (inside the separable blocks), with even channel counts throughout.

    stem   conv 3x3 (in -> widths[0]) + BN + ReLU
    s1..sN entry conv 3x3 stride 2 (except s1) + BN + ReLU, then depths[i] separable residual blocks:
           depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN, identity shortcut, ReLU
    head   global average pool + Linear(widths[-1], num_classes)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .registry import Family, register_family


@dataclass(frozen=True)
class CompactParams:
    depths: tuple[int, ...] = (1, 1, 1)
    widths: tuple[int, ...] = (16, 32, 64)
    in_channels: int = 1
    num_classes: int = 10
    resolution: int = 16

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ValueError("depths and widths need the same, non-zero length")


def _conv_bn_relu(width_in: int, width_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(width_in, width_out, 3, stride=stride, padding=1, bias=False),
            bn=nn.BatchNorm2d(width_out),
            relu=nn.ReLU(inplace=True),
        )
    )


class SeparableBlock(nn.Module):
    """x + pointwise(depthwise(x)): (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.dw_bn = nn.BatchNorm2d(width)
        self.pw = nn.Conv2d(width, width, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.dw_bn(self.dw(x)))
        out = self.pw_bn(self.pw(out))
        return self.relu(out + x)


class CompactNet(nn.Module):
    def __init__(self, params: CompactParams) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(params.in_channels, params.widths[0], 1)
        width_in = params.widths[0]
        for index, (depth, width) in enumerate(zip(params.depths, params.widths)):
            stage = nn.Sequential(
                OrderedDict(
                    [("entry", _conv_bn_relu(width_in, width, 1 if index == 0 else 2))]
                    + [(f"b{block + 1}", SeparableBlock(width)) for block in range(depth)]
                )
            )
            self.add_module(f"s{index + 1}", stage)
            width_in = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width_in, params.num_classes)
        self.num_stages = len(params.depths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.stem(x)
        for index in range(self.num_stages):
            x = getattr(self, f"s{index + 1}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def build_compact(params: CompactParams) -> CompactNet:
    return CompactNet(params)


FAMILY = register_family(
    Family(
        name="compact",
        summary="compact CNN with dense and depthwise-separable 3x3 convs, for quick searches (digits, CIFAR)",
        configs={
            "ConvOps-S": CompactParams(),
            "ConvOps-M": CompactParams(depths=(1, 2, 2), widths=(24, 48, 96)),
            "ConvOps-cifar": CompactParams(
                depths=(1, 2, 2), widths=(32, 64, 128), in_channels=3, resolution=32
            ),
        },
        build=build_compact,
        input_shape=lambda p: (p.in_channels, p.resolution, p.resolution),
    )
)
