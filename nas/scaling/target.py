"""The scaling factor that brings a model's flops to a target.

Scaled models are rounded (depths to integers, widths to multiples of 8, resolution to multiples of 4), so the
flops are a step function of the factor and a target is met only within that rounding. ``factor_for_flops``
brackets the target, bisects on the logarithm of the factor, and returns the evaluated factor whose flops are
closest to the target (relative, in log space; ties: the smaller factor).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NasError


@dataclass(frozen=True)
class FlopsFit:
    factor: float
    flops: int
    target: float
    evaluations: dict[float, int] = field(default_factory=dict, compare=False)  # factor -> flops

    @property
    def ratio(self) -> float:
        """Achieved flops / target."""
        return self.flops / self.target


def factor_for_flops(
    flops_at: Callable[[float], int],
    target: float,
    *,
    bracket_steps: int = 12,
    bisection_steps: int = 24,
    tolerance: float = 1e-3,
) -> FlopsFit:
    """The factor ``f`` whose ``flops_at(f)`` is closest to ``target``; ``flops_at(1)`` is the unscaled model.

    Flops grow about linearly with the factor (the definition of a compound scaling rule), so the first guess is
    ``target / flops_at(1)``; the bracket then doubles or halves until it holds the target, and bisection on
    ``log(f)`` stops when the bracket is narrower than ``tolerance`` (relative) or the flops stop changing."""
    if not target > 0 or not math.isfinite(target):
        raise NasError(f"--flops {target:g}: expected a positive number")
    seen: dict[float, int] = {}

    def flops(factor: float) -> int:
        if factor not in seen:
            seen[factor] = int(flops_at(factor))
        return seen[factor]

    guess = target / max(flops(1.0), 1)
    low = high = guess
    for _ in range(bracket_steps):
        if flops(low) <= target:
            break
        low /= 2
    for _ in range(bracket_steps):
        if flops(high) >= target:
            break
        high *= 2
    if flops(low) <= target <= flops(high):
        for _ in range(bisection_steps):
            if high / low <= 1 + tolerance or flops(low) == flops(high):
                break
            middle = math.sqrt(low * high)
            if flops(middle) < target:
                low = middle
            else:
                high = middle
    best = min(seen, key=lambda f: (abs(math.log(max(seen[f], 1) / target)), f))
    return FlopsFit(best, seen[best], float(target), dict(sorted(seen.items())))
