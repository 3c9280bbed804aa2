"""DnCNN denoiser (Zhang et al. 2017, "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image
Denoising", Sec. III-A and Fig. 1).

``depth`` 3x3 conv layers of ``features`` channels: conv (with bias) + ReLU, ``depth - 2`` x (conv without bias +
BN + ReLU), conv (no bias) back to the image channels. The network predicts the noise ``v = R(y)`` and returns the
clean estimate ``x = y - R(y)`` (residual learning, Eq. 1). Children: ``stem``, ``body`` (``b1`` ..), ``head``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConvBnAct
from .registry import Family, register_family


@dataclass(frozen=True)
class DnCNNParams:
    """``in_channels`` is the image channel count (the output has the same); ``resolution`` the training patch."""

    depth: int = 17
    features: int = 64
    in_channels: int = 1
    kernel_size: int = 3
    resolution: int = 40

    def __post_init__(self) -> None:
        if self.depth < 3:
            raise ValueError(f"DnCNN needs depth >= 3, got {self.depth}")


class DnCNN(nn.Module):
    """(N, C, H, W) noisy image -> (N, C, H, W) denoised image ``y - R(y)``."""

    def __init__(self, params: DnCNNParams) -> None:
        super().__init__()
        channels, features, kernel_size = params.in_channels, params.features, params.kernel_size
        self.stem = ConvBnAct(channels, features, kernel_size, bias=True, batch_norm=False)
        body = OrderedDict(
            (f"b{index + 1}", ConvBnAct(features, features, kernel_size, bias=False))
            for index in range(params.depth - 2)
        )
        self.body = nn.Sequential(body)
        self.head = nn.Conv2d(features, channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = self.head(self.body(self.stem(x)))  # (N, C, H, W): the predicted residual R(y)
        return x - noise


def _init_weights(module: nn.Module) -> None:
    """He et al. 2015 initialization (Eq. 14, forward case), as Zhang et al. 2017 Sec. IV-A; meta tensors skipped."""
    if any(parameter.is_meta for parameter in module.parameters(recurse=False)):
        return
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_dncnn(params: DnCNNParams) -> DnCNN:
    model = DnCNN(params)
    model.apply(_init_weights)
    return model


def dncnn_input_shape(params: DnCNNParams) -> tuple[int, int, int]:
    return (params.in_channels, params.resolution, params.resolution)


CONFIGS: dict[str, DnCNNParams] = {
    "DnCNN-17": DnCNNParams(depth=17),
    "DnCNN-20": DnCNNParams(depth=20),
}

FAMILY = register_family(
    Family(
        name="dncnn",
        summary="DnCNN residual denoiser (Zhang et al. 2017), grayscale 40x40 patches",
        configs=CONFIGS,
        build=build_dncnn,
        input_shape=dncnn_input_shape,
    )
)
