"""Parametric scaling of the built-in families, pycls-exact (Dollar et al. 2021; pycls ``scaler.py`` rules)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.errors import NasError
from nas.models import build_model
from nas.scaling import scale_model

REFERENCE = json.loads((Path(__file__).parents[2] / "data" / "pycls_counts.json").read_text())


def meta_model(reference: str):
    """The family model on the meta device: its costs without its weights (quick to build and to scale)."""
    with torch.device("meta"):
        return build_model(reference)


def test_regnety_4gf_times_4_by_dwr_to_the_digit():
    base = meta_model("regnet:RegNetY-4.0GF")
    scaled = scale_model(base, 4, "dWr", materialize=False)
    after = scaled.after
    assert after.depths == (2, 7, 14, 2)
    assert after.widths == (224, 336, 896, 1904)
    assert after.group_widths == (112, 112, 112, 112)
    assert (after.resolution, after.test_resolution) == (240, 276)
    assert scaled.input_shape == (3, 240, 240)
    costs = scaled.costs()
    assert costs["after"] == {"flops": 15_608_249_240, "params": 68_144_472, "acts": 26_542_408}
    expected_before = REFERENCE["RegNetY-4.0GF"]
    assert costs["before"] == {key: expected_before[key] for key in ("flops", "params", "acts")}
    assert (round(costs["ratios"]["flops"], 2), round(costs["ratios"]["acts"], 2)) == (3.93, 2.16)
    assert scaled.before.depths == (2, 6, 12, 2) and scaled.before.widths == (128, 192, 512, 1088)


def test_resnet50_times_2_hand_computed():
    # d = 2^0.1 = 1.0718, w = g = 2^0.4 = 1.3195. widths: 256 w / 8 = 42.2 -> 336, 512 -> 672, 1024 -> 1352,
    # 2048 -> 2704; group widths: 64 g = 84.4 -> 84 -> 84 / 8 = 10.5 -> 10 (half to even) -> 80, 128 -> 168,
    # 256 -> 336, 512 -> 675.6 -> 676 -> 84.5 -> 84 -> 672. Compatibility with b = 1/4: bottleneck 336 / 4 = 84
    # becomes a multiple of g = 80 -> 80 -> width 320; 1352 / 4 = 338 -> 336 -> 1344; 2704 / 4 = 676 -> 672 -> 2688.
    scaled = scale_model(meta_model("resnet:ResNet-50"), 2, "dWr", materialize=False)
    assert scaled.after.depths == (3, 4, 6, 3)
    assert scaled.after.widths == (320, 672, 1344, 2688)
    assert scaled.after.group_widths == (80, 168, 336, 672)
    assert scaled.after.resolution == 232  # 224 * 2^0.05 = 231.9 -> 58 * 4
    assert scaled.after.extra["stem_width"] == 64  # stem not scaled (AnyNet)


def test_efficientnet_b0_times_4_hand_computed():
    # d = 1.1487: 4.59 -> 5 for the 4-block stage; w = 1.7411: 16 -> 24, 24 -> 40, 40 -> 72, 80 -> 136,
    # 112 -> 192, 192 -> 336, 320 -> 560; stem 32 -> 56 and head 1280 -> 2232 scale too (pycls EfficientNet).
    scaled = scale_model(meta_model("effnet:EN-B0"), 4, "dWr", materialize=False)
    assert scaled.after.depths == (1, 2, 2, 3, 3, 5, 1)
    assert scaled.after.widths == (24, 40, 72, 136, 192, 336, 560)
    assert (scaled.after.extra["stem_width"], scaled.after.extra["head_width"]) == (56, 2232)
    assert (scaled.after.resolution, scaled.after.test_resolution) == (240, 276)
    assert scaled.after.group_widths is None


def test_vgg_and_dncnn_simple_rules():
    vgg = scale_model(meta_model("vgg:VGG-16-cifar"), 4, "dWr", materialize=False)
    assert vgg.after.depths == (2, 2, 3, 3, 3) and vgg.after.widths == (112, 224, 448, 888, 888)
    assert vgg.after.resolution == 36  # 32 * 1.0718 / 4 = 8.57 -> 9
    dncnn = scale_model(meta_model("dncnn:DnCNN-17"), 8, "dWr", materialize=False)
    # the 15 middle layers: 15 * 8^0.1 = 18.47 -> 18, plus the first and last layers; 64 * 8^0.4 / 8 = 18.4 -> 144
    assert dncnn.config.depth == 20 and dncnn.config.features == 144
    assert dncnn.after.depths == (18,) and dncnn.input_shape == (1, 44, 44)


@pytest.mark.parametrize("reference", ["vgg:VGG-16-cifar", "dncnn:DnCNN-17"])
def test_graph_level_scaling_reproduces_the_simple_rules(reference):
    """Where the graph holds the family's structure, graph-level scaling (without flops matching) gives the
    same architecture and costs as the parametric rule: an independent check of both."""
    base = meta_model(reference)
    parametric = scale_model(base, 8, "dWr", materialize=False)
    graph = scale_model(base, 8, "dWr", method="graph", match_flops=False)
    assert graph.method == "graph" and graph.notes == []
    assert graph.after.depths == parametric.after.depths[-len(graph.after.depths) :]
    assert graph.costs()["after"] == parametric.costs()["after"]


def test_scaled_model_is_built_and_runs():
    scaled = scale_model(build_model("resnet:ResNet-20-cifar"), 2, "dWr")
    assert scaled.after.depths == (3, 3, 3) and scaled.after.widths == (24, 40, 88)
    with torch.no_grad():
        output = scaled.module.eval()(torch.randn(2, *scaled.input_shape))
    assert output.shape == (2, 10)


def test_input_override_and_errors():
    scaled = scale_model(meta_model("regnet:RegNetX-200MF"), 2, "dWr", (3, 64, 64), materialize=False)
    assert scaled.input_shape == (3, 68, 68)  # 64 * 1.0353 = 66.3 -> 68
    assert scaled.costs()["ratios"]["flops"] > 1.5
    with pytest.raises(NasError, match="method"):
        scale_model(build_model("regnet:RegNetX-200MF"), 2, method="magic")
    with pytest.raises(NasError, match="parametric scaling needs"):
        scale_model(build_model("torchvision.models:resnet18"), 2, method="parametric")
