"""Scaling rules and their factors (Dollar, Singh, Girshick 2021, "Fast and Accurate Model Scaling", Sec. 3-5).

A rule distributes a flops multiplier ``s`` over depth ``d``, width ``w``, group width ``g`` and resolution ``r``.
Flops grow as ``d * w^2 * r^2`` (Sec. 3), so with weights ``wd, ww, wg, wr`` and ``S = wd + ww + wr``::

    d = s^(wd / S)    w = s^(ww / S / 2)    g = s^(wg / S / 2)    r = s^(wr / S / 2)

(``S`` is ``wg / 2`` when it is 0, and 1 when that is 0 too), so that ``d * w^2 * r^2 = s``. Group width is scaled
beside width: with ``wg = ww`` the number of groups of a grouped conv stays the same.

Spellings (those of pycls):
- weights ``d<a>_w<b>_g<c>_r<e>``, missing terms 0: ``d1_w8_g8_r1`` is fast compound scaling;
- letters ``d``, ``w``, ``r``, ``dw``, ``dr``, ``wr``, ``dwr``, ``dwgr`` ...: weight 1 for each letter present;
- ``dWr``: fast compound scaling, ``d1_w8_g8_r1`` (alpha = 0.8: activations grow about ``s^(1 - alpha / 2)``);
- ``alpha=<a>`` (0 <= a <= 1): exponents ``(1 - a) / 2`` for depth, ``a / 2`` for width and group width and
  ``(1 - a) / 4`` for resolution (weights ``d = r = (1 - a) / 2``, ``w = g = a``); ``alpha=0.8`` equals ``dWr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import NasError

DIMENSIONS = "dwgr"
ALIASES = {"dWr": "d1_w8_g8_r1"}


@dataclass(frozen=True)
class ScalingRule:
    """Relative weights of depth, width, group width and resolution; ``name`` is the spelling it came from."""

    depth: float
    width: float
    group: float
    resolution: float
    name: str = ""

    @property
    def canonical(self) -> str:
        """The pycls weight spelling, e.g. ``d1_w8_g8_r1``."""
        weights = (self.depth, self.width, self.group, self.resolution)
        return "_".join(f"{letter}{weight:g}" for letter, weight in zip(DIMENSIONS, weights))


@dataclass(frozen=True)
class ScalingFactors:
    """Multipliers for depth, width, group width and resolution of a flops multiplier ``factor``."""

    factor: float
    depth: float
    width: float
    group: float
    resolution: float

    @property
    def flops_multiplier(self) -> float:
        """``d * w^2 * r^2``, the flops multiplier before rounding (equals ``factor`` within 1%)."""
        return self.depth * self.width * self.width * self.resolution * self.resolution

    def as_dict(self) -> dict[str, float]:
        return dict(depth=self.depth, width=self.width, group=self.group, resolution=self.resolution)


def _bad_rule(text: str, why: str) -> NasError:
    return NasError(
        f"scaling rule {text!r}: {why} (examples: dWr, d1_w8_g8_r1, dw, dwr, alpha=0.8; letters are d, w, g, r)"
    )


def _parse_number(text: str, term: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _bad_rule(text, f"term {term!r} needs a number after its letter") from None
    if not math.isfinite(number) or number < 0:
        raise _bad_rule(text, f"term {term!r}: weights are finite and >= 0")
    return number


def parse_rule(text: str) -> ScalingRule:
    """A ScalingRule from any of the spellings above; a bad spelling raises NasError naming it."""
    text = text.strip()
    if not text:
        raise _bad_rule(text, "empty rule")
    if text in ALIASES:
        rule = parse_rule(ALIASES[text])
        return ScalingRule(rule.depth, rule.width, rule.group, rule.resolution, text)
    if text.startswith("alpha="):
        alpha = _parse_number(text, text, text[len("alpha=") :])
        if alpha > 1:
            raise _bad_rule(text, "alpha lies in [0, 1]")
        return ScalingRule((1 - alpha) / 2, alpha, alpha, (1 - alpha) / 2, text)
    if all(letter in DIMENSIONS for letter in text):
        if len(set(text)) != len(text):
            raise _bad_rule(text, "a letter appears twice")
        weights = [1.0 if letter in text else 0.0 for letter in DIMENSIONS]
        return ScalingRule(*weights, name=text)
    weights = dict.fromkeys(DIMENSIONS, 0.0)
    seen = set()
    for term in text.split("_"):
        letter = term[:1]
        if letter not in DIMENSIONS:
            raise _bad_rule(text, f"unknown dimension {term!r}")
        if letter in seen:
            raise _bad_rule(text, f"dimension {letter!r} appears twice")
        seen.add(letter)
        weights[letter] = _parse_number(text, term, term[1:])
    return ScalingRule(*(weights[letter] for letter in DIMENSIONS), name=text)


def scaling_factors(rule: ScalingRule | str, factor: float) -> ScalingFactors:
    """Depth, width, group and resolution multipliers of flops multiplier ``factor`` (paper Sec. 4, pycls).

    The float operations are pycls's, so rounding downstream gives pycls's architectures to the digit.
    """
    if isinstance(rule, str):
        rule = parse_rule(rule)
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise NasError(f"scaling factor {factor!r}: expected a positive number")
    factor = float(factor)
    total = rule.depth + rule.width + rule.resolution or rule.group / 2 or 1.0
    depth = factor ** (rule.depth / total)
    width = factor ** (rule.width / total / 2.0)
    group = factor ** (rule.group / total / 2.0)
    resolution = factor ** (rule.resolution / total / 2.0)
    factors = ScalingFactors(factor, depth, width, group, resolution)
    if not (
        depth == width == resolution == 1.0 or math.isclose(factors.flops_multiplier, factor, rel_tol=0.01)
    ):
        raise NasError(
            f"scaling rule {rule.name or rule.canonical!r}: d * w^2 * r^2 = {factors.flops_multiplier:.4g} "
            f"is not the factor {factor:g}"
        )
    return factors
