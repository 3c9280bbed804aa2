"""AnyNet stems, blocks and head (Radosavovic et al. 2020, "Designing Network Design Spaces", Sec. 3 and Fig. 3;
He et al. 2016 for the residual blocks; Xie et al. 2017 for grouped bottlenecks).

Every conv has no bias and is followed by BatchNorm. A residual block whose width or stride changes gets a
projection shortcut: 1x1 conv with the stride + BN. Registries ``STEMS`` and ``BLOCKS`` map pycls's type names to
constructors; every block takes ``(width_in, width_out, stride, bottleneck_multiplier, group_width, se_ratio)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .layers import SqueezeExcitation


def _conv(width_in: int, width_out: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        width_in,
        width_out,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        groups=groups,
        bias=False,
    )


# ----------------------------------------------------------------------------------------------------- stems


class ResStemCifar(nn.Module):
    """ResNet CIFAR stem: 3x3 conv stride 1, BN, ReLU."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.conv = _conv(width_in, width_out, 3)
        self.bn = nn.BatchNorm2d(width_out)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))  # (N, C_in, H, W) -> (N, C_out, H, W)


class ResStemImageNet(nn.Module):
    """ResNet ImageNet stem: 7x7 conv stride 2 pad 3, BN, ReLU, 3x3 max-pool stride 2 pad 1."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.conv = _conv(width_in, width_out, 7, stride=2)
        self.bn = nn.BatchNorm2d(width_out)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))  # (N, C_in, H, W) -> (N, C_out, H / 4, W / 4)


class SimpleStemImageNet(nn.Module):
    """Simple ImageNet stem (RegNet): 3x3 conv stride 2 pad 1, BN, ReLU."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.conv = _conv(width_in, width_out, 3, stride=2)
        self.bn = nn.BatchNorm2d(width_out)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))  # (N, C_in, H, W) -> (N, C_out, H / 2, W / 2)


STEMS: dict[str, Callable[[int, int], nn.Module]] = {
    "res_stem_cifar": ResStemCifar,
    "res_stem_in": ResStemImageNet,
    "simple_stem_in": SimpleStemImageNet,
}

# ---------------------------------------------------------------------------------------------------- blocks


class VanillaBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers, the first with the stride; no shortcut."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        bottleneck_multiplier: float = 1.0,
        group_width: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.a = _conv(width_in, width_out, 3, stride=stride)
        self.a_bn = nn.BatchNorm2d(width_out)
        self.a_relu = nn.ReLU()
        self.b = _conv(width_out, width_out, 3)
        self.b_bn = nn.BatchNorm2d(width_out)
        self.b_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))  # (N, W_out, H / s, W / s)
        return self.b_relu(self.b_bn(self.b(x)))


class BasicTransform(nn.Module):
    """Residual branch of the basic block: 3x3 conv (stride) + BN + ReLU, 3x3 conv + BN."""

    def __init__(self, width_in: int, width_out: int, stride: int) -> None:
        super().__init__()
        self.a = _conv(width_in, width_out, 3, stride=stride)
        self.a_bn = nn.BatchNorm2d(width_out)
        self.a_relu = nn.ReLU()
        self.b = _conv(width_out, width_out, 3)
        self.b_bn = nn.BatchNorm2d(width_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))  # (N, W_out, H / s, W / s)
        return self.b_bn(self.b(x))


class BottleneckTransform(nn.Module):
    """Bottleneck branch: 1x1 -> 3x3 grouped (stride) -> [SE] -> 1x1.

    Bottleneck width ``w_b = round(width_out * bottleneck_multiplier)``, groups ``w_b // group_width``; the SE squeeze
    width is ``round(se_ratio * width_in)`` (pycls, RegNetY).
    """

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        bottleneck_multiplier: float,
        group_width: int,
        se_ratio: float,
    ) -> None:
        super().__init__()
        width_bottleneck = int(round(width_out * bottleneck_multiplier))
        groups = width_bottleneck // group_width
        self.a = _conv(width_in, width_bottleneck, 1)
        self.a_bn = nn.BatchNorm2d(width_bottleneck)
        self.a_relu = nn.ReLU()
        self.b = _conv(width_bottleneck, width_bottleneck, 3, stride=stride, groups=groups)
        self.b_bn = nn.BatchNorm2d(width_bottleneck)
        self.b_relu = nn.ReLU()
        if se_ratio > 0:
            self.se = SqueezeExcitation(width_bottleneck, int(round(se_ratio * width_in)))
        else:
            self.se = None
        self.c = _conv(width_bottleneck, width_out, 1)
        self.c_bn = nn.BatchNorm2d(width_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))  # (N, w_b, H, W)
        x = self.b_relu(self.b_bn(self.b(x)))  # (N, w_b, H / s, W / s)
        if self.se is not None:
            x = self.se(x)
        return self.c_bn(self.c(x))  # (N, W_out, H / s, W / s)


class _ResidualBlock(nn.Module):
    """``relu(shortcut(x) + f(x))`` with a projection shortcut when width or stride changes."""

    def __init__(self, transform: nn.Module, width_in: int, width_out: int, stride: int) -> None:
        super().__init__()
        if width_in != width_out or stride != 1:
            self.proj = _conv(width_in, width_out, 1, stride=stride)
            self.proj_bn = nn.BatchNorm2d(width_out)
        else:
            self.proj = None
            self.proj_bn = None
        self.f = transform
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))  # (N, W_out, H / s, W / s)
        return self.relu(shortcut + self.f(x))


class ResBasicBlock(_ResidualBlock):
    """Residual basic block (He et al. 2016, Fig. 2): ``relu(shortcut(x) + BasicTransform(x))``."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        bottleneck_multiplier: float = 1.0,
        group_width: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__(BasicTransform(width_in, width_out, stride), width_in, width_out, stride)


class ResBottleneckBlock(_ResidualBlock):
    """Residual bottleneck block (He et al. 2016, Fig. 5; ResNeXt / RegNet with groups and SE)."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        bottleneck_multiplier: float = 1.0,
        group_width: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        transform = BottleneckTransform(
            width_in, width_out, stride, bottleneck_multiplier, group_width, se_ratio
        )
        super().__init__(transform, width_in, width_out, stride)


class ResBottleneckLinearBlock(nn.Module):
    """Bottleneck with a linear output: ``x + f(x)`` when stride 1 and widths equal, else ``f(x)``; no final ReLU."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        bottleneck_multiplier: float = 1.0,
        group_width: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.has_skip = width_in == width_out and stride == 1
        self.f = BottleneckTransform(
            width_in, width_out, stride, bottleneck_multiplier, group_width, se_ratio
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x) if self.has_skip else self.f(x)  # (N, W_out, H / s, W / s)


BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "vanilla_block": VanillaBlock,
    "res_basic_block": ResBasicBlock,
    "res_bottleneck_block": ResBottleneckBlock,
    "res_bottleneck_linear_block": ResBottleneckLinearBlock,
}

# ------------------------------------------------------------------------------------------------------ head


class AnyHead(nn.Module):
    """Optional 1x1 conv + BN + ReLU to ``head_width`` (when > 0), global average pool, Linear to the classes."""

    def __init__(self, width_in: int, head_width: int, num_classes: int) -> None:
        super().__init__()
        if head_width > 0:
            self.conv = _conv(width_in, head_width, 1)
            self.conv_bn = nn.BatchNorm2d(head_width)
            self.conv_relu = nn.ReLU()
            width_in = head_width
        else:
            self.conv = None
            self.conv_bn = None
            self.conv_relu = None
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(width_in, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv_relu(self.conv_bn(self.conv(x)))  # (N, head_width, H, W)
        return self.fc(self.flatten(self.avg_pool(x)))  # (N, num_classes)
