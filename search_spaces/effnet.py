"""EfficientNet family (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs", Table 1 and Sec. 4; the
MBConv block of Sandler et al. 2018 with squeeze-and-excitation), with the pycls stage parameters of EN-B0..B5.

Stem: 3x3 conv stride 2 + BN + SiLU. MBConv: 1x1 expansion to ``int(width_in * expansion_ratio)`` + BN + SiLU
(absent when the ratio is 1), depthwise kxk conv (padding (k - 1) // 2, the stride) + BN + SiLU, SE over the
expanded width with squeeze width ``int(width_in * se_ratio)`` (truncated) and SiLU inside, 1x1 linear projection +
BN; identity residual when stride 1 and width_in == width_out. Head: 1x1 conv to ``head_width`` + BN + SiLU, global
average pool, dropout, Linear. Drop-connect is not implemented (pycls's default ratio is 0).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConvBnAct, SqueezeExcitation, init_weights
from .registry import Family, register_family

_STAGE_FIELDS = ("depths", "widths", "strides", "expansion_ratios", "kernel_sizes")


@dataclass(frozen=True)
class EffNetParams:
    """One EfficientNet: stem width, per-stage lists (one entry per stage), head width and training options."""

    stem_width: int
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    expansion_ratios: tuple[float, ...]
    kernel_sizes: tuple[int, ...]
    head_width: int
    se_ratio: float = 0.25
    dropout_ratio: float = 0.0
    num_classes: int = 1000
    in_channels: int = 3
    resolution: int = 224
    test_resolution: int = 256

    def __post_init__(self) -> None:
        for name in _STAGE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        lengths = {name: len(getattr(self, name)) for name in _STAGE_FIELDS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"EfficientNet stage lists must have one entry per stage, got lengths {lengths}")


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE (Sandler et al. 2018, Fig. 3; Tan & Le 2019, Table 1)."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        expansion_ratio: float,
        kernel_size: int,
        se_ratio: float,
    ) -> None:
        super().__init__()
        width_expanded = int(width_in * expansion_ratio)
        if width_expanded != width_in:
            self.exp = nn.Conv2d(width_in, width_expanded, 1, bias=False)
            self.exp_bn = nn.BatchNorm2d(width_expanded)
            self.exp_act = nn.SiLU()
        else:
            self.exp = None
            self.exp_bn = None
            self.exp_act = None
        padding = (kernel_size - 1) // 2
        self.dwise = nn.Conv2d(
            width_expanded, width_expanded, kernel_size, stride, padding, groups=width_expanded, bias=False
        )
        self.dwise_bn = nn.BatchNorm2d(width_expanded)
        self.dwise_act = nn.SiLU()
        self.se = SqueezeExcitation(width_expanded, int(width_in * se_ratio), activation=nn.SiLU)
        self.lin_proj = nn.Conv2d(width_expanded, width_out, 1, bias=False)
        self.lin_proj_bn = nn.BatchNorm2d(width_out)
        self.has_skip = stride == 1 and width_in == width_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x
        if self.exp is not None:
            f = self.exp_act(self.exp_bn(self.exp(f)))  # (N, width_expanded, H, W)
        f = self.dwise_act(self.dwise_bn(self.dwise(f)))  # (N, width_expanded, H / s, W / s)
        f = self.se(f)
        f = self.lin_proj_bn(self.lin_proj(f))  # (N, width_out, H / s, W / s)
        return x + f if self.has_skip else f


class EffHead(nn.Module):
    """1x1 conv + BN + SiLU to ``head_width``, global average pool, dropout, Linear."""

    def __init__(self, width_in: int, head_width: int, num_classes: int, dropout_ratio: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width_in, head_width, 1, bias=False)
        self.conv_bn = nn.BatchNorm2d(head_width)
        self.conv_act = nn.SiLU()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(p=dropout_ratio)
        self.fc = nn.Linear(head_width, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_act(self.conv_bn(self.conv(x)))  # (N, head_width, H, W)
        return self.fc(self.dropout(self.flatten(self.avg_pool(x))))  # (N, num_classes)


class EffNet(nn.Module):
    """``head(s_N(...s_1(stem(x))))``, children ``stem``, ``s1`` .. ``s7`` (blocks ``b1`` ..), ``head``."""

    def __init__(self, params: EffNetParams) -> None:
        super().__init__()
        self.stem = ConvBnAct(params.in_channels, params.stem_width, 3, stride=2, activation=nn.SiLU)
        width_in = params.stem_width
        num_stages = len(params.depths)
        for index in range(num_stages):
            blocks = OrderedDict()
            for block_index in range(params.depths[index]):
                stride = params.strides[index] if block_index == 0 else 1
                blocks[f"b{block_index + 1}"] = MBConv(
                    width_in,
                    params.widths[index],
                    stride,
                    params.expansion_ratios[index],
                    params.kernel_sizes[index],
                    params.se_ratio,
                )
                width_in = params.widths[index]
            self.add_module(f"s{index + 1}", nn.Sequential(blocks))
        self.head = EffHead(width_in, params.head_width, params.num_classes, params.dropout_ratio)
        self.num_stages = num_stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, stem_width, H / 2, W / 2)
        for index in range(self.num_stages):
            x = getattr(self, f"s{index + 1}")(x)  # (N, widths[index], ...)
        return self.head(x)  # (N, num_classes)


def build_effnet(params: EffNetParams) -> EffNet:
    model = EffNet(params)
    model.apply(init_weights)
    return model


def effnet_input_shape(params: EffNetParams) -> tuple[int, int, int]:
    return (params.in_channels, params.resolution, params.resolution)


_STRIDES = (1, 2, 2, 2, 1, 2, 1)
_EXPANSION_RATIOS = (1, 6, 6, 6, 6, 6, 6)
_KERNEL_SIZES = (3, 3, 5, 3, 5, 5, 3)


def _config(
    stem_width: int,
    depths: tuple[int, ...],
    widths: tuple[int, ...],
    head_width: int,
    resolution: int,
    test_resolution: int,
) -> EffNetParams:
    return EffNetParams(
        stem_width=stem_width,
        depths=depths,
        widths=widths,
        strides=_STRIDES,
        expansion_ratios=_EXPANSION_RATIOS,
        kernel_sizes=_KERNEL_SIZES,
        head_width=head_width,
        resolution=resolution,
        test_resolution=test_resolution,
    )


# pycls configs/dds_baselines/effnet/EN-B*_dds_8gpu.yaml (train / test resolutions from the same files).
CONFIGS: dict[str, EffNetParams] = {
    "EN-B0": _config(32, (1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320), 1280, 224, 256),
    "EN-B1": _config(32, (2, 3, 3, 4, 4, 5, 2), (16, 24, 40, 80, 112, 192, 320), 1280, 240, 274),
    "EN-B2": _config(32, (2, 3, 3, 4, 4, 5, 2), (16, 24, 48, 88, 120, 208, 352), 1408, 260, 298),
    "EN-B3": _config(40, (2, 3, 3, 5, 5, 6, 2), (24, 32, 48, 96, 136, 232, 384), 1536, 300, 342),
    "EN-B4": _config(48, (2, 4, 4, 6, 6, 8, 2), (24, 32, 56, 112, 160, 272, 448), 1792, 380, 434),
    "EN-B5": _config(48, (3, 5, 5, 7, 7, 9, 3), (24, 40, 64, 128, 176, 304, 512), 2048, 456, 522),
}

FAMILY = register_family(
    Family(
        name="effnet",
        summary="EfficientNet EN-B0..B5 (Tan & Le 2019) with pycls stage parameters, ImageNet",
        configs=CONFIGS,
        build=build_effnet,
        input_shape=effnet_input_shape,
    )
)
