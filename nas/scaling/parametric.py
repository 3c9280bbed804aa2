"""Parametric scaling of the built-in families: scale their parameters with pycls's rounding and rebuild.

Dollar et al. 2021 (pycls ``scaler.py`` semantics):
- AnyNet (and so ResNet, ResNeXt): stage depths ``max(1, round(d * depth))``; stage widths
  ``max(1, round(w * width / 8)) * 8``; group widths ``max(1, round(g * gw))`` then snapped (<= 2 kept, <= 5 -> 4,
  else a multiple of 8); then widths made compatible with group width and bottleneck multiplier
  (``adjust_block_compatibility``); stem and head unchanged. Basic and vanilla blocks have no group width (pycls's
  configs leave it empty), so their widths are not re-adjusted.
- RegNet: the generator parameters are first turned into the explicit AnyNet stages they generate, and those
  stages are scaled (pycls converts a RegNet config to an AnyNet config before scaling); the result is an AnyNet.
- EfficientNet: stage depths and widths as above, stem and head widths too, widths made compatible with the
  expansion ratios (group width 1).
- Train and test resolution: ``round(r * size / 4) * 4``.
- VGG and DnCNN (not scaled by pycls; a simple rule in the same spirit): per-stage conv counts (DnCNN: its
  ``depth - 2`` middle layers) scaled like depths, widths like widths, resolution like resolution.

Families register a ``FamilyScaler`` under their parameter dataclass (``register_scaler``; the registry is an
``operators.registry.Registry`` keyed by the dataclass's qualified name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from operators.registry import Registry
from search_spaces.anynet import AnyNetParams, adjust_block_compatibility, build_anynet
from search_spaces.dncnn import DnCNNParams, build_dncnn
from search_spaces.effnet import EffNetParams, build_effnet
from search_spaces.regnet import RegNetParams, build_regnet
from search_spaces.vgg import VGGParams, build_vgg

from .architecture import Architecture
from .rounding import scale_depth, scale_group_width, scale_resolution, scale_width
from .rules import ScalingFactors

GROUPED_BLOCKS = ("res_bottleneck_block", "res_bottleneck_linear_block")


@dataclass(frozen=True)
class FamilyScaler:
    """How one parameter dataclass scales: ``scale(params, factors)`` returns the scaled parameters (possibly of
    another dataclass, e.g. RegNet -> AnyNet), ``describe`` summarizes parameters, ``build`` builds them."""

    params_type: type
    scale: Callable[[Any, ScalingFactors], Any]
    describe: Callable[[Any], Architecture]
    build: Callable[[Any], nn.Module]
    note: str = ""


SCALERS: Registry[FamilyScaler] = Registry("family scaler")


def scaler_key(params_type: type) -> str:
    """The registry's name for a parameter dataclass: its qualified name, module included."""
    return f"{params_type.__module__}.{params_type.__qualname__}"


def register_scaler(scaler: FamilyScaler) -> FamilyScaler:
    """Add the scaler of one parameter dataclass; a second one for the same dataclass raises ValueError."""
    return SCALERS.register(scaler_key(scaler.params_type), scaler)


def get_scaler(params: Any) -> FamilyScaler | None:
    """The scaler registered for ``params``'s dataclass, None when there is none."""
    key = scaler_key(type(params))
    return SCALERS.get(key) if key in SCALERS else None


def scalable_types() -> list[str]:
    return [SCALERS.get(key).params_type.__name__ for key in SCALERS.names()]


def with_input_shape(params: Any, input_shape: tuple[int, int, int]) -> Any:
    """``params`` with ``in_channels`` and ``resolution`` taken from an input shape (C, H, H)."""
    channels, height, width = input_shape
    if height != width:
        raise ValueError(f"the built-in families take square inputs, got {height}x{width}")
    names = {f.name for f in dataclasses.fields(params)}
    changes = {
        key: value for key, value in (("in_channels", channels), ("resolution", height)) if key in names
    }
    return dataclasses.replace(params, **changes)


def _resolutions(params: Any, factors: ScalingFactors) -> dict[str, int]:
    changes = {"resolution": scale_resolution(params.resolution, factors.resolution)}
    if getattr(params, "test_resolution", None) is not None:
        changes["test_resolution"] = scale_resolution(params.test_resolution, factors.resolution)
    return changes


# -- AnyNet / ResNet / RegNet ----------------------------------------------------------------------------------
def scale_anynet(params: AnyNetParams, factors: ScalingFactors) -> AnyNetParams:
    """pycls's AnyNet scaling (module docstring)."""
    depths = tuple(scale_depth(depth, factors.depth) for depth in params.depths)
    widths = tuple(scale_width(width, factors.width) for width in params.widths)
    if params.block_type in GROUPED_BLOCKS:
        group_widths = tuple(scale_group_width(gw, factors.group) for gw in params.group_widths)
        widths, group_widths = adjust_block_compatibility(widths, params.bottleneck_multipliers, group_widths)
    else:
        group_widths = widths
    return dataclasses.replace(
        params, depths=depths, widths=widths, group_widths=group_widths, **_resolutions(params, factors)
    )


def describe_anynet(params: AnyNetParams) -> Architecture:
    extra: dict[str, Any] = {"stem_width": params.stem_width}
    if params.head_width:
        extra["head_width"] = params.head_width
    if any(b != 1 for b in params.bottleneck_multipliers):
        extra["bottleneck_multipliers"] = list(params.bottleneck_multipliers)
    grouped = params.block_type in GROUPED_BLOCKS
    return Architecture(
        depths=params.depths,
        widths=params.widths,
        resolution=params.resolution,
        group_widths=params.group_widths if grouped else None,
        test_resolution=params.test_resolution,
        extra=extra,
    )


# -- EfficientNet ----------------------------------------------------------------------------------------------
def scale_effnet(params: EffNetParams, factors: ScalingFactors) -> EffNetParams:
    """pycls's EfficientNet scaling: stages, stem and head widths, resolution."""
    depths = tuple(scale_depth(depth, factors.depth) for depth in params.depths)
    widths = tuple(scale_width(width, factors.width) for width in params.widths)
    widths, _ = adjust_block_compatibility(widths, params.expansion_ratios, (1,) * len(widths))
    return dataclasses.replace(
        params,
        depths=depths,
        widths=widths,
        stem_width=scale_width(params.stem_width, factors.width),
        head_width=scale_width(params.head_width, factors.width),
        **_resolutions(params, factors),
    )


def describe_effnet(params: EffNetParams) -> Architecture:
    return Architecture(
        depths=params.depths,
        widths=params.widths,
        resolution=params.resolution,
        test_resolution=params.test_resolution,
        extra={"stem_width": params.stem_width, "head_width": params.head_width},
    )


# -- VGG and DnCNN (simple rules) ------------------------------------------------------------------------------
def scale_vgg(params: VGGParams, factors: ScalingFactors) -> VGGParams:
    return dataclasses.replace(
        params,
        depths=tuple(scale_depth(depth, factors.depth) for depth in params.depths),
        widths=tuple(scale_width(width, factors.width) for width in params.widths),
        **_resolutions(params, factors),
    )


def describe_vgg(params: VGGParams) -> Architecture:
    return Architecture(
        params.depths, params.widths, params.resolution, test_resolution=params.test_resolution
    )


def scale_dncnn(params: DnCNNParams, factors: ScalingFactors) -> DnCNNParams:
    """The ``depth - 2`` middle conv + BN + ReLU layers scale like a stage; ``features`` like a width."""
    return dataclasses.replace(
        params,
        depth=scale_depth(params.depth - 2, factors.depth) + 2,
        features=scale_width(params.features, factors.width),
        resolution=scale_resolution(params.resolution, factors.resolution),
    )


def describe_dncnn(params: DnCNNParams) -> Architecture:
    return Architecture((params.depth - 2,), (params.features,), params.resolution)


register_scaler(FamilyScaler(AnyNetParams, scale_anynet, describe_anynet, build_anynet))
register_scaler(
    FamilyScaler(
        RegNetParams,
        lambda params, factors: scale_anynet(params.to_anynet(), factors),
        lambda params: describe_anynet(params.to_anynet()),
        build_regnet,
        note="RegNet parameters were turned into the explicit AnyNet stages they generate, and those stages "
        "scaled (as pycls does); the scaled model is an AnyNet",
    )
)
register_scaler(FamilyScaler(EffNetParams, scale_effnet, describe_effnet, build_effnet))
register_scaler(FamilyScaler(VGGParams, scale_vgg, describe_vgg, build_vgg))
register_scaler(FamilyScaler(DnCNNParams, scale_dncnn, describe_dncnn, build_dncnn))
