"""How sure a quality difference is: 95% intervals on validation accuracy and mean PSNR, and the verdict a
report prints ("gain", "no measurable gain", "loss").

- Accuracy, ``k`` of ``n`` validation samples right: the Wilson score interval (Wilson 1927),
  ``(p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``; the difference of two accuracies by
  Newcombe's hybrid score method (Newcombe 1998, method 10), which combines the two Wilson intervals.
- A mean over validation images (PSNR, SSIM): ``mean -/+ z * se``, ``se = std / sqrt(n)``; the difference of two
  means ``-/+ z sqrt(se_a^2 + se_b^2)``.
Both treat the two models' validation results as independent (no pairing), which errs on the side of "no
measurable gain".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054  # two-sided 95%


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return max(self.value - self.low, self.high - self.value)


def wilson_interval(p: float, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval of a proportion ``p`` observed on ``n`` samples."""
    if n <= 0:
        return Interval(p, 0.0, 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - spread), min(1.0, centre + spread))


def proportion_difference(a: float, n_a: int, b: float, n_b: int, z: float = Z95) -> Interval:
    """``a - b`` with Newcombe's hybrid score interval (from the two Wilson intervals)."""
    wa, wb = wilson_interval(a, n_a, z), wilson_interval(b, n_b, z)
    difference = a - b
    low = difference - math.sqrt((a - wa.low) ** 2 + (wb.high - b) ** 2)
    high = difference + math.sqrt((wa.high - a) ** 2 + (b - wb.low) ** 2)
    return Interval(difference, low, high)


def mean_difference(a: float, se_a: float, b: float, se_b: float, z: float = Z95) -> Interval:
    difference = a - b
    spread = z * math.sqrt(se_a * se_a + se_b * se_b)
    return Interval(difference, difference - spread, difference + spread)


def quality_interval(metric: str, metrics: dict[str, Any], z: float = Z95) -> Interval | None:
    """The 95% interval of one trial's validation ``metric`` (None when its metrics lack what it needs)."""
    value, n = metrics.get(metric), metrics.get("val_size")
    if value is None:
        return None
    if metric == "accuracy" and n:
        return wilson_interval(float(value), int(n), z)
    se = metrics.get(f"{metric}_se")
    if se is not None:
        return Interval(float(value), float(value) - z * float(se), float(value) + z * float(se))
    return None


def quality_difference(
    metric: str, model: dict[str, Any], baseline: dict[str, Any], z: float = Z95
) -> Interval | None:
    """``model - baseline`` on ``metric`` with its 95% interval (None when the uncertainty is unknown)."""
    a, b = model.get(metric), baseline.get(metric)
    if a is None or b is None:
        return None
    if metric == "accuracy" and model.get("val_size") and baseline.get("val_size"):
        return proportion_difference(float(a), int(model["val_size"]), float(b), int(baseline["val_size"]), z)
    se_a, se_b = model.get(f"{metric}_se"), baseline.get(f"{metric}_se")
    if se_a is not None and se_b is not None:
        return mean_difference(float(a), float(se_a), float(b), float(se_b), z)
    return None


def verdict(difference: Interval, maximize: bool = True) -> str:
    """The verdict on a difference: "gain" when its whole interval is better, "loss" when all of it is worse,
    else "no measurable gain"."""
    low, high = (difference.low, difference.high) if maximize else (-difference.high, -difference.low)
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "no measurable gain"
