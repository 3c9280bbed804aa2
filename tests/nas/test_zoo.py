"""Capture and counting over torchvision's classification zoo (CI installs torchvision, so these run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode

from nas.cost import count
from nas.graph import capture, conv_nodes, graph_view

torchvision = pytest.importorskip(
    "torchvision", reason="torchvision is a test dependency: pip install -e '.[test]'"
)

REFERENCE = json.loads((Path(__file__).parents[2] / "tests" / "data" / "pycls_counts.json").read_text())

ZOO = [
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "regnet_y_400mf",
    "regnet_x_400mf",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "mnasnet0_5",
    "convnext_tiny",
    "vgg11_bn",
    "densenet121",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "googlenet",
    "inception_v3",
    "alexnet",
]
KWARGS = {
    "googlenet": dict(aux_logits=False, init_weights=False),
    "inception_v3": dict(aux_logits=False, init_weights=False),
}
SIZE = {"inception_v3": 96}  # needs >= 75 px; everything else runs at 64 px to keep CI cheap


def _build(name: str) -> torch.nn.Module:
    return getattr(torchvision.models, name)(**KWARGS.get(name, {})).eval()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_capture_shapes_and_macs(name):
    model = _build(name)
    size = SIZE.get(name, 64)
    module = capture(model, (3, size, size))
    report = count(module)
    assert report.unknown_ops == {}, report.unknown_ops
    assert conv_nodes(module) and graph_view(module).number_of_nodes() == len(module.graph.nodes)

    x = torch.randn(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert report.macs == counter.get_total_flops() // 2  # torch counts 2 flops per multiply-add
    assert report.params == sum(p.numel() for p in model.parameters())

    meta_shapes = {node.name: node.meta.get("shape") for node in module.graph.nodes}
    with torch.no_grad():
        ShapeProp(module).propagate(x)
    for node in module.graph.nodes:
        tensor_meta = node.meta.get("tensor_meta")
        if hasattr(tensor_meta, "shape"):
            assert meta_shapes[node.name] == tuple(tensor_meta.shape), node.name


TORCHVISION_EQUIVALENTS = {
    "resnet50": "R-50-1x64d",
    "resnet101": "R-101-1x64d",
    "resnet152": "R-152-1x64d",
    "resnext50_32x4d": "X-50-32x4d",
    "efficientnet_b0": "EN-B0",
    "regnet_y_400mf": "RegNetY-400MF",
    "regnet_x_1_6gf": "RegNetX-1.6GF",
    "regnet_y_16gf": "RegNetY-16GF",
}


@pytest.mark.parametrize("name,config", TORCHVISION_EQUIVALENTS.items())
def test_torchvision_equals_pycls_to_the_digit(name, config):
    expected = REFERENCE[config]
    report = count(capture(_build(name), (3, expected["resolution"], expected["resolution"])))
    assert report.totals() == {key: expected[key] for key in ("flops", "macs", "acts", "params")}


def test_vision_transformer_attention_is_counted():
    """MultiheadAttention: projections are linears (as torch counts them) plus the two attention matmuls,
    which torch's counter misses on this path: 12 layers x 2 x 197 tokens^2 x 768."""
    model = torchvision.models.vit_b_16(dropout=0.0, attention_dropout=0.0)
    report = count(capture(model, (3, 224, 224)))
    assert report.unknown_ops == {}
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 224, 224))
    assert report.macs == counter.get_total_flops() // 2 + 12 * 2 * 197 * 197 * 768
