"""ResNet / ResNeXt family as AnyNet stage parameters (He et al. 2016, "Deep Residual Learning for Image
Recognition", Table 1 and Sec. 4.2; Xie et al. 2017, "Aggregated Residual Transformations", Table 1).

ImageNet models: ``res_stem_in`` (7x7 conv + 3x3 max-pool, 64 channels), stage strides 1, 2, 2, 2, the stride on
the 3x3 conv of the first block (pycls / torchvision "v1.5"). Names follow the pycls model zoo (``R-50-1x64d``,
``X-50-32x4d``) with readable aliases (``ResNet-50``, ``ResNeXt-50-32x4d``). CIFAR models (He et al. 2016,
Sec. 4.2): ``res_stem_cifar`` with 16 channels, three stages of basic blocks of widths 16, 32, 64, depth 6n + 2,
projection shortcuts (pycls ``configs/archive/cifar``).
"""

from __future__ import annotations

from .anynet import AnyNet, AnyNetParams, anynet_input_shape, build_anynet
from .registry import Family, register_family

_IMAGENET_STRIDES = (1, 2, 2, 2)


def _bottleneck(depths: tuple[int, ...], groups: int, bottleneck_width: int) -> AnyNetParams:
    """ImageNet bottleneck ResNet / ResNeXt ``groups x bottleneck_width d`` (pycls ``R-50-1x64d`` naming).

    Stage output widths are 256, 512, 1024, 2048; the first stage's bottleneck is ``groups * bottleneck_width`` wide
    and doubles per stage, so ``bottleneck_multiplier = groups * bottleneck_width / 256`` and the group width is
    ``bottleneck_width * 2^stage``.
    """
    widths = (256, 512, 1024, 2048)
    return AnyNetParams(
        stem_type="res_stem_in",
        stem_width=64,
        block_type="res_bottleneck_block",
        depths=depths,
        widths=widths,
        strides=_IMAGENET_STRIDES,
        bottleneck_multipliers=(groups * bottleneck_width / 256,) * 4,
        group_widths=tuple(bottleneck_width * 2**stage for stage in range(4)),
    )


def _basic(depths: tuple[int, ...]) -> AnyNetParams:
    """ImageNet ResNet-18/34: basic blocks of widths 64, 128, 256, 512."""
    widths = (64, 128, 256, 512)
    return AnyNetParams(
        stem_type="res_stem_in",
        stem_width=64,
        block_type="res_basic_block",
        depths=depths,
        widths=widths,
        strides=_IMAGENET_STRIDES,
        bottleneck_multipliers=(1.0,) * 4,
        group_widths=widths,
    )


def _cifar(depth: int) -> AnyNetParams:
    """CIFAR ResNet-``depth`` (depth = 6n + 2): 3 stages of n basic blocks, 10 classes, 32x32 inputs."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2, got {depth}")
    blocks = (depth - 2) // 6
    widths = (16, 32, 64)
    return AnyNetParams(
        stem_type="res_stem_cifar",
        stem_width=16,
        block_type="res_basic_block",
        depths=(blocks,) * 3,
        widths=widths,
        strides=(1, 2, 2),
        bottleneck_multipliers=(1.0,) * 3,
        group_widths=widths,
        num_classes=10,
        resolution=32,
        test_resolution=32,
    )


CONFIGS: dict[str, AnyNetParams] = {
    "R-50-1x64d": _bottleneck((3, 4, 6, 3), groups=1, bottleneck_width=64),
    "R-101-1x64d": _bottleneck((3, 4, 23, 3), groups=1, bottleneck_width=64),
    "R-152-1x64d": _bottleneck((3, 8, 36, 3), groups=1, bottleneck_width=64),
    "X-50-32x4d": _bottleneck((3, 4, 6, 3), groups=32, bottleneck_width=4),
    "X-101-32x4d": _bottleneck((3, 4, 23, 3), groups=32, bottleneck_width=4),
    "X-152-32x4d": _bottleneck((3, 8, 36, 3), groups=32, bottleneck_width=4),
}
CONFIGS.update(
    {
        "ResNet-18": _basic((2, 2, 2, 2)),
        "ResNet-34": _basic((3, 4, 6, 3)),
        "ResNet-50": CONFIGS["R-50-1x64d"],
        "ResNet-101": CONFIGS["R-101-1x64d"],
        "ResNet-152": CONFIGS["R-152-1x64d"],
        "ResNeXt-50-32x4d": CONFIGS["X-50-32x4d"],
        "ResNeXt-101-32x4d": CONFIGS["X-101-32x4d"],
        "ResNet-20-cifar": _cifar(20),
        "ResNet-56-cifar": _cifar(56),
        "ResNet-110-cifar": _cifar(110),
    }
)


def build_resnet(params: AnyNetParams) -> AnyNet:
    return build_anynet(params)


FAMILY = register_family(
    Family(
        name="resnet",
        summary="ResNet / ResNeXt (He et al. 2016, Xie et al. 2017) as AnyNets: ImageNet and CIFAR configs",
        configs=CONFIGS,
        build=build_resnet,
        input_shape=anynet_input_shape,
    )
)
