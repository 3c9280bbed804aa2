"""Layers shared by the built-in families: squeeze-and-excitation, conv + BN + activation, weight init.

Plain PyTorch, traceable by ``torch.fx`` (no data-dependent control flow).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation gate (Hu et al. 2018, "Squeeze-and-Excitation Networks", Eq. 2-4).

    ``x * sigmoid(expand(act(reduce(avg_pool(x)))))``; both 1x1 convs carry a bias, as in pycls. The squeeze width
    is chosen by the caller (AnyNet rounds ``se_ratio * width_in``, EfficientNet truncates it).
    """

    def __init__(self, width: int, squeeze_width: int, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(width, squeeze_width, kernel_size=1, bias=True)
        self.act = activation()
        self.expand = nn.Conv2d(squeeze_width, width, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) -> scale: (N, C, 1, 1)
        scale = self.gate(self.expand(self.act(self.reduce(self.avg_pool(x)))))
        return x * scale  # (N, C, H, W)


class ConvBnAct(nn.Module):
    """``conv -> BatchNorm -> activation`` with "same" padding ``(kernel_size - 1) // 2`` (children ``conv``, ``bn``,
    ``act``); ``batch_norm=False`` leaves ``bn`` None."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = False,
        batch_norm: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(width_in, width_out, kernel_size, stride=stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(width_out) if batch_norm else None
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, width_in, H, W) -> (N, width_out, H / stride, W / stride)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


def init_weights(module: nn.Module) -> None:
    """pycls / He et al. 2015 ("Delving Deep into Rectifiers", Eq. 10, backward case) initialization.

    Conv weights ~ N(0, 2 / fan_out) with fan_out = k_h * k_w * out_channels; conv biases 0; BatchNorm weight 1 and
    bias 0; Linear weights ~ N(0, 0.01^2) and bias 0. Use with ``model.apply(init_weights)``. Meta tensors hold no
    values, so a model built on the meta device is left as is.
    """
    if any(parameter.is_meta for parameter in module.parameters(recurse=False)):
        return
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.01)
        nn.init.zeros_(module.bias)
