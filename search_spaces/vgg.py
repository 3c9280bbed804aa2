"""CIFAR VGG with BatchNorm (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks", Table 1, configurations
A, B, D, E; BatchNorm after every conv as in Ioffe & Szegedy 2015), the CIFAR-100 setting of the weighted
convolution paper (Cammarasana & Patane).

Five stages of 3x3 convs (pad 1) + BN + ReLU, each followed by a 2x2 max-pool; then global average pooling to 512
features and ``Linear(512, num_classes)``. Stage depths are 1,1,2,2,2 (VGG-11), 2,2,2,2,2 (VGG-13), 2,2,3,3,3
(VGG-16) and 2,2,4,4,4 (VGG-19) with widths 64, 128, 256, 512, 512. Children: ``s1`` .. ``s5`` (blocks ``b1`` ..
and ``pool``), ``head``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConvBnAct, init_weights
from .registry import Family, register_family


@dataclass(frozen=True)
class VGGParams:
    """Per-stage conv counts and widths; ``conv_bias`` keeps the bias of the classic VGG convs."""

    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    batch_norm: bool = True
    conv_bias: bool = True
    num_classes: int = 100
    in_channels: int = 3
    resolution: int = 32
    test_resolution: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "widths", tuple(self.widths))
        if len(self.depths) != len(self.widths):
            raise ValueError(
                f"VGG needs one width per stage, got depths {self.depths} and widths {self.widths}"
            )


class VGGHead(nn.Module):
    """Global average pool, flatten, Linear."""

    def __init__(self, width_in: int, num_classes: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(width_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.avg_pool(x)))  # (N, C, H, W) -> (N, num_classes)


class VGG(nn.Module):
    def __init__(self, params: VGGParams) -> None:
        super().__init__()
        width_in = params.in_channels
        for index, (depth, width) in enumerate(zip(params.depths, params.widths, strict=True)):
            layers = OrderedDict()
            for block_index in range(depth):
                layers[f"b{block_index + 1}"] = ConvBnAct(
                    width_in, width, 3, bias=params.conv_bias, batch_norm=params.batch_norm
                )
                width_in = width
            layers["pool"] = nn.MaxPool2d(kernel_size=2, stride=2)
            self.add_module(f"s{index + 1}", nn.Sequential(layers))
        self.head = VGGHead(width_in, params.num_classes)
        self.num_stages = len(params.depths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(self.num_stages):
            x = getattr(self, f"s{index + 1}")(x)  # (N, widths[index], H / 2^(index+1), W / 2^(index+1))
        return self.head(x)  # (N, num_classes)


def build_vgg(params: VGGParams) -> VGG:
    model = VGG(params)
    model.apply(init_weights)
    return model


def vgg_input_shape(params: VGGParams) -> tuple[int, int, int]:
    return (params.in_channels, params.resolution, params.resolution)


CONFIGS: dict[str, VGGParams] = {
    "VGG-11-cifar": VGGParams(depths=(1, 1, 2, 2, 2)),
    "VGG-13-cifar": VGGParams(depths=(2, 2, 2, 2, 2)),
    "VGG-16-cifar": VGGParams(depths=(2, 2, 3, 3, 3)),
    "VGG-19-cifar": VGGParams(depths=(2, 2, 4, 4, 4)),
}

FAMILY = register_family(
    Family(
        name="vgg",
        summary="CIFAR VGG-11/13/16/19 with BatchNorm (Simonyan & Zisserman 2015), CIFAR-100 32x32",
        configs=CONFIGS,
        build=build_vgg,
        input_shape=vgg_input_shape,
    )
)
