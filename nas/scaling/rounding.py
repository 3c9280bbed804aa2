"""pycls's rounding of scaled architecture parameters (Dollar et al. 2021; Radosavovic et al. 2020, Sec. 4).

Python's ``round`` (half to even) throughout, as pycls.
"""

from __future__ import annotations

WIDTH_QUANTUM = 8
RESOLUTION_QUANTUM = 4


def scale_depth(depth: int, factor: float) -> int:
    """Stage depth ``max(1, round(d * depth))``."""
    return max(1, round(depth * factor))


def scale_width(width: int, factor: float, quantum: int = WIDTH_QUANTUM) -> int:
    """Width ``max(1, round(w * width / 8)) * 8``."""
    return max(1, round(width * factor / quantum)) * quantum


def snap_group_width(group_width: int) -> int:
    """pycls's group width snapping: widths <= 2 kept, <= 5 become 4, larger ones a multiple of 8."""
    if group_width <= 2:
        return group_width
    if group_width <= 5:
        return 4
    return round(group_width / 8) * 8


def scale_group_width(group_width: int, factor: float) -> int:
    """Group width ``max(1, round(g * group_width))``, then snapped (``snap_group_width``)."""
    return snap_group_width(max(1, round(group_width * factor)))


def scale_resolution(size: int, factor: float, quantum: int = RESOLUTION_QUANTUM) -> int:
    """Resolution ``round(r * size / 4) * 4`` (never below one quantum)."""
    return max(quantum, round(size * factor / quantum) * quantum)
