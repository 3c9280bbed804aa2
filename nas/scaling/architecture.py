"""A summary of an architecture as scaling sees it: per-stage depths, widths and group widths, and resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """Per-stage ``depths`` (blocks), ``widths`` (output channels) and ``group_widths`` (None when the model has
    no grouped convs), the train ``resolution`` (H, or (H, W) when not square) and, for families that have one,
    ``test_resolution``. ``stages`` names the stages (graph-level scaling: the container path of their blocks);
    ``extra`` holds family fields such as stem and head widths."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    resolution: int | tuple[int, int]
    group_widths: tuple[int | None, ...] | None = None
    test_resolution: int | None = None
    stages: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(depths=list(self.depths), widths=list(self.widths))
        if self.group_widths is not None:
            data["group_widths"] = list(self.group_widths)
        data["resolution"] = list(self.resolution) if isinstance(self.resolution, tuple) else self.resolution
        if self.test_resolution is not None:
            data["test_resolution"] = self.test_resolution
        if self.stages:
            data["stages"] = list(self.stages)
        data.update(self.extra)
        return data


def resolution_of(input_shape: tuple[int, ...]) -> int | tuple[int, int]:
    """H for a square input (C, H, W), else (H, W)."""
    height, width = input_shape[-2], input_shape[-1]
    return height if height == width else (height, width)
