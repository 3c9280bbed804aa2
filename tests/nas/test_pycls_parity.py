"""The cost model through the built-in families equals pycls to the digit (all 36 reference configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.cost import count
from nas.graph import capture
from nas.models import build_model

DATA = Path(__file__).parents[1] / "data"
REFERENCE = json.loads((DATA / "pycls_counts.json").read_text())
COMPLEXITY = json.loads((DATA / "pycls_model_complexity.json").read_text())
FAMILY_OF = {"EN": "effnet", "Re": "regnet", "R-": "resnet", "X-": "resnet"}


def _count(reference: str, resolution: int):
    with torch.device("meta"):  # no weights are allocated: RegNetY-32GF costs as little as RegNetX-200MF
        model = build_model(reference).module
    return count(capture(model, (3, resolution, resolution)))


@pytest.mark.parametrize("config", sorted(REFERENCE))
def test_reference_config(config):
    expected = REFERENCE[config]
    report = _count(f"{FAMILY_OF[config[:2]]}:{config}", expected["resolution"])
    assert report.totals() == {key: expected[key] for key in ("flops", "macs", "acts", "params")}
    assert report.unknown_ops == {}


@pytest.mark.parametrize("config,key", [("ResNet-56-cifar", "R-56"), ("ResNet-110-cifar", "R-110")])
def test_cifar_resnets(config, key):
    expected = COMPLEXITY[f"configs/archive/cifar/resnet/{key}_nds_1gpu.yaml"]
    report = _count(f"resnet:{config}", 32)
    assert (report.flops, report.params, report.acts) == (
        expected["flops"],
        expected["params"],
        expected["acts"],
    )
