"""Scaling rules, factors and pycls's rounding (Dollar et al. 2021, Sec. 4; pycls)."""

from __future__ import annotations

import math

import pytest

from nas.errors import NasError
from nas.scaling import parse_rule, scaling_factors
from nas.scaling.rounding import (
    scale_depth,
    scale_group_width,
    scale_resolution,
    scale_width,
    snap_group_width,
)


def test_fast_compound_scaling_factors_at_4x():
    # d = 4^(1/10), w = g = 4^(8/10/2), r = 4^(1/10/2): the figures, to 4 decimals
    factors = scaling_factors("d1_w8_g8_r1", 4)
    assert (round(factors.depth, 4), round(factors.width, 4)) == (1.1487, 1.7411)
    assert (round(factors.group, 4), round(factors.resolution, 4)) == (1.7411, 1.0718)
    assert math.isclose(factors.flops_multiplier, 4)


def test_spellings_of_the_same_rule():
    reference = scaling_factors("d1_w8_g8_r1", 8)
    assert scaling_factors("dWr", 8) == reference
    alpha = scaling_factors("alpha=0.8", 8)
    for name in ("depth", "width", "group", "resolution"):
        assert math.isclose(getattr(alpha, name), getattr(reference, name))
    assert parse_rule("dWr").canonical == "d1_w8_g8_r1"
    assert parse_rule("d1_w2").canonical == "d1_w2_g0_r0"  # missing terms are 0


@pytest.mark.parametrize(
    "rule,expected",
    [
        ("d", (4.0, 1.0, 1.0, 1.0)),  # all flops to depth
        ("w", (1.0, 2.0, 1.0, 1.0)),  # w^2 = s
        ("r", (1.0, 1.0, 1.0, 2.0)),
        ("dw", (2.0, math.sqrt(2), 1.0, 1.0)),  # S = 2: d = s^(1/2), w = s^(1/4)
        ("wr", (1.0, math.sqrt(2), 1.0, math.sqrt(2))),
        ("dwgr", (4 ** (1 / 3), 4 ** (1 / 6), 4 ** (1 / 6), 4 ** (1 / 6))),
        ("g", (1.0, 1.0, 4.0, 1.0)),  # S = 0 -> wg / 2: g = s^(1 / (1/2) / 2) = s
        ("d0_w0_g0_r0", (1.0, 1.0, 1.0, 1.0)),  # S = 0 and wg = 0 -> 1: nothing scales
        ("alpha=1", (1.0, 2.0, 2.0, 1.0)),  # pure width (with groups)
        ("alpha=0", (2.0, 1.0, 1.0, math.sqrt(2))),
    ],
)
def test_factors_of_rules_at_4x(rule, expected):
    factors = scaling_factors(rule, 4)
    got = (factors.depth, factors.width, factors.group, factors.resolution)
    assert all(math.isclose(a, b) for a, b in zip(got, expected)), got


@pytest.mark.parametrize("rule", ["d", "dr", "dwr", "d2_w1_r3", "d1_w8_g8_r1", "alpha=0.3", "w0.5_r0.25"])
@pytest.mark.parametrize("factor", [0.5, 2, 16])
def test_flops_multiplier_is_the_factor(rule, factor):
    assert math.isclose(scaling_factors(rule, factor).flops_multiplier, factor)


@pytest.mark.parametrize(
    "rule", ["", "x", "dd", "d1_d2", "d1_x2", "dq", "d-1", "dnan", "alpha=1.5", "alpha=x"]
)
def test_bad_rules_are_errors_naming_them(rule):
    with pytest.raises(NasError, match="scaling rule"):
        parse_rule(rule)


@pytest.mark.parametrize("factor", [0, -2, float("nan"), float("inf")])
def test_bad_factors(factor):
    with pytest.raises(NasError, match="factor"):
        scaling_factors("dWr", factor)


def test_pycls_rounding_half_to_even():
    assert scale_width(20, 1.0) == 16  # 20 / 8 = 2.5 -> 2 (half to even) -> 16
    assert scale_width(28, 1.0) == 32  # 3.5 -> 4
    assert scale_width(1, 0.1) == 8  # never below one quantum
    assert scale_depth(3, 1.1487) == 3 and scale_depth(6, 1.1487) == 7 and scale_depth(1, 0.2) == 1
    assert scale_depth(2, 1.25) == 2  # 2.5 -> 2 (half to even)
    assert (
        scale_resolution(224, 1.0717734625362931) == 240 and scale_resolution(256, 1.0717734625362931) == 276
    )


def test_group_width_snapping():
    assert [snap_group_width(g) for g in (1, 2, 3, 4, 5, 6, 12, 20, 28)] == [1, 2, 4, 4, 4, 8, 16, 16, 32]
    assert scale_group_width(64, 1.7411011265922482) == 112  # round(111.43) = 111 -> round(13.875) * 8
    assert scale_group_width(1, 1.7411011265922482) == 2  # round(1.74) = 2, kept (<= 2)
