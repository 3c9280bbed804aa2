"""AnyNet: stem, stages of blocks, head, described by per-stage parameters (Radosavovic et al. 2020, "Designing
Network Design Spaces", Sec. 3.1; the pycls ``AnyNet``).

``AnyNetParams`` is the architecture as data; ``build_anynet(params)`` the model, with children ``stem``,
``s1`` .. ``sN`` (each holding blocks ``b1`` .. ``bD``; the first block of a stage carries its stride) and ``head``.
ResNet, ResNeXt and RegNet are AnyNets.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .anynet_blocks import BLOCKS, STEMS, AnyHead
from .layers import init_weights

_STAGE_FIELDS = ("depths", "widths", "strides", "bottleneck_multipliers", "group_widths")


@dataclass(frozen=True)
class AnyNetParams:
    """One AnyNet: stem, per-stage lists (one entry per stage) and head.

    ``bottleneck_multipliers`` and ``group_widths`` only matter for bottleneck blocks; ``se_ratio`` 0 means no SE;
    ``head_width`` 0 means no head conv. Lists given by the user are stored as tuples.
    """

    stem_type: str
    stem_width: int
    block_type: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    bottleneck_multipliers: tuple[float, ...]
    group_widths: tuple[int, ...]
    se_ratio: float = 0.0
    head_width: int = 0
    num_classes: int = 1000
    in_channels: int = 3
    resolution: int = 224
    test_resolution: int = 256

    def __post_init__(self) -> None:
        for name in _STAGE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        lengths = {name: len(getattr(self, name)) for name in _STAGE_FIELDS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"AnyNet stage lists must have one entry per stage, got lengths {lengths}")
        if self.stem_type not in STEMS:
            raise ValueError(f"unknown stem_type {self.stem_type!r} (known: {', '.join(STEMS)})")
        if self.block_type not in BLOCKS:
            raise ValueError(f"unknown block_type {self.block_type!r} (known: {', '.join(BLOCKS)})")

    @property
    def num_stages(self) -> int:
        return len(self.depths)


class AnyNet(nn.Module):
    """``head(s_N(...s_1(stem(x))))``: (N, in_channels, H, W) -> (N, num_classes)."""

    def __init__(self, params: AnyNetParams) -> None:
        super().__init__()
        self.stem = STEMS[params.stem_type](params.in_channels, params.stem_width)
        block = BLOCKS[params.block_type]
        width_in = params.stem_width
        for index in range(params.num_stages):
            width_out = params.widths[index]
            blocks = OrderedDict()
            for block_index in range(params.depths[index]):
                stride = params.strides[index] if block_index == 0 else 1
                blocks[f"b{block_index + 1}"] = block(
                    width_in,
                    width_out,
                    stride,
                    params.bottleneck_multipliers[index],
                    params.group_widths[index],
                    params.se_ratio,
                )
                width_in = width_out
            self.add_module(f"s{index + 1}", nn.Sequential(blocks))
        self.head = AnyHead(width_in, params.head_width, params.num_classes)
        self.num_stages = params.num_stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, stem_width, H', W')
        for index in range(self.num_stages):
            x = getattr(self, f"s{index + 1}")(x)  # (N, widths[index], H' / prod(strides[:index+1]), ...)
        return self.head(x)  # (N, num_classes)


def build_anynet(params: AnyNetParams) -> AnyNet:
    """Build an AnyNet and initialize it as pycls does (``layers.init_weights``)."""
    model = AnyNet(params)
    model.apply(init_weights)
    return model


def anynet_input_shape(params: AnyNetParams) -> tuple[int, int, int]:
    return (params.in_channels, params.resolution, params.resolution)


def adjust_block_compatibility(
    widths: tuple[int, ...], bottleneck_multipliers: tuple[float, ...], group_widths: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Make stage widths compatible with their group width and bottleneck multiplier (pycls / Radosavovic et al.
    2020, Sec. 4: the bottleneck width ``w * b`` must be a multiple of the group width ``g``).

    Per stage: ``v = int(max(1, w * b))``; ``g = int(min(g, v))``; ``m = lcm(g, b)`` if ``b > 1`` else ``g``;
    ``v = max(m, int(round(v / m) * m))``; ``w = int(v / b)``. Returns (widths, group_widths).
    """
    adjusted_widths, adjusted_groups = [], []
    for width, multiplier, group_width in zip(widths, bottleneck_multipliers, group_widths, strict=True):
        bottleneck = int(max(1, width * multiplier))
        group_width = int(min(group_width, bottleneck))
        multiple = math.lcm(group_width, int(multiplier)) if multiplier > 1 else group_width
        bottleneck = max(multiple, int(round(bottleneck / multiple) * multiple))
        adjusted_widths.append(int(bottleneck / multiplier))
        adjusted_groups.append(group_width)
    return tuple(adjusted_widths), tuple(adjusted_groups)
