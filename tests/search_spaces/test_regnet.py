"""RegNet width generator and block compatibility, checked against hand-computed values."""

from __future__ import annotations

import dataclasses

import pytest

from search_spaces import get_family
from search_spaces.anynet import adjust_block_compatibility
from search_spaces.regnet import RegNetParams, generate_regnet_stages


def test_generator_small_hand_example() -> None:
    # u = 24, 48, 72, 96; s = round(log2(u / 24)) = 0, 1, round(1.585) = 2, 2; w = 24, 48, 96, 96
    assert generate_regnet_stages(depth=4, w0=24, wa=24.0, wm=2.0) == ((24, 48, 96), (1, 1, 2))


def test_generator_quantizes_to_multiples_of_eight() -> None:
    # RegNetX-200MF: u_1 = 60.44, s_1 = round(1.012) = 1, w = 24 * 2.49 = 59.76 -> round(7.47) * 8 = 56;
    # s = 2 for j = 2..5: 24 * 2.49^2 = 148.8 -> 152; s = 3 for j = 6..12: 370.5 -> 368
    assert generate_regnet_stages(13, 24, 36.44, 2.49) == ((24, 56, 152, 368), (1, 1, 4, 7))


def test_generator_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="wm > 1"):
        generate_regnet_stages(10, 24, 10.0, 1.0)


@pytest.mark.parametrize(
    ("widths", "multipliers", "group_widths", "expected"),
    [
        ((100,), (1.0,), (24,), ((96,), (24,))),  # v = 100 -> round(100 / 24) * 24 = 96
        ((16,), (1.0,), (32,), ((16,), (16,))),  # group width capped at the bottleneck width
        ((256,), (0.25,), (64,), ((256,), (64,))),  # v = 64, already a multiple of 64
        ((200,), (0.25,), (64,), ((200,), (50,))),  # v = 50 caps the group width at 50: w unchanged
        ((20,), (2.0,), (8,), ((20,), (8,))),  # b > 1: m = lcm(8, 2) = 8, v = 40 -> w = 20
        ((22,), (3.0,), (4,), ((24,), (4,))),  # m = lcm(4, 3) = 12, v = 66 -> round(5.5) * 12 = 72 -> w = 24
    ],
)
def test_adjust_block_compatibility(widths, multipliers, group_widths, expected) -> None:
    assert adjust_block_compatibility(widths, multipliers, group_widths) == expected


def test_to_anynet_regnety() -> None:
    params = get_family("regnet").config("RegNetY-200MF")
    anynet = params.to_anynet()
    assert (anynet.stem_type, anynet.stem_width, anynet.block_type) == (
        "simple_stem_in",
        32,
        "res_bottleneck_block",
    )
    assert anynet.widths == (24, 56, 152, 368) and anynet.depths == (1, 1, 4, 7)
    assert anynet.strides == (2, 2, 2, 2) and anynet.group_widths == (8, 8, 8, 8)
    assert anynet.se_ratio == 0.25 and anynet.head_width == 0
    assert get_family("regnet").config("RegNetX-200MF").to_anynet().se_ratio == 0.0


def test_user_kwargs_pass_through_to_anynet() -> None:
    params = dataclasses.replace(
        get_family("regnet").config("RegNetX-400MF"), num_classes=10, in_channels=1, resolution=32
    )
    anynet = params.to_anynet()
    assert (anynet.num_classes, anynet.in_channels, anynet.resolution) == (10, 1, 32)


def test_group_width_changes_widths() -> None:
    # the same generator with group width 48 forces widths to multiples of 48
    anynet = RegNetParams(depth=13, w0=24, wa=36.44, wm=2.49, group_width=48).to_anynet()
    assert anynet.widths == (24, 48, 144, 384)  # 24 caps g at 24; 56 -> 48; 152 -> 144; 368 -> 384
    assert anynet.group_widths == (24, 48, 48, 48)
