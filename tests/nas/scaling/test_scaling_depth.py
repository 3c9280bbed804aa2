"""Stages and repeated blocks of captured graphs, and depth scaling by copying or dropping blocks."""

from __future__ import annotations

import operator

import pytest
import torch

from nas.graph import capture
from nas.models import build_model
from nas.scaling import scale_model
from nas.scaling.blocks import find_stages

torchvision = pytest.importorskip("torchvision")


def _stages(model, size=64):
    return find_stages(capture(model, (3, size, size), batch_size=2))


def test_resnet50_stages():
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    stages, notes = _stages(model)
    assert [stage.name for stage in stages] == [
        "layer1[0..2]",
        "layer2[0..3]",
        "layer3[0..5]",
        "layer4[0..2]",
    ]
    assert [len(stage.units) for stage in stages] == [3, 4, 6, 3]
    assert [stage.repeatable for stage in stages] == [2, 3, 5, 2]  # the first block of each stage projects
    assert notes == []


def test_mobilenet_v2_stages_are_the_papers_table():
    with torch.device("meta"):
        model = torchvision.models.mobilenet_v2()
    stages, _ = _stages(model)
    # Sandler et al. 2018, Table 2, column n (the 14x14 section is two stages: 64 and 96 channels)
    assert [len(stage.units) for stage in stages] == [1, 2, 3, 4, 3, 3, 1]


def test_dense_layers_are_reported_not_scaled():
    with torch.device("meta"):
        model = torchvision.models.densenet121()
    stages, notes = _stages(model)
    assert stages == [] and len(notes) == 4 and all("_DenseLayer" in note for note in notes)


def test_depth_scaling_copies_and_drops_blocks():
    base = build_model("dncnn:DnCNN-17")  # 15 identical middle layers
    deeper = scale_model(base, 2, "d", method="graph")  # d = 2: 30 middle layers
    assert (deeper.before.depths, deeper.after.depths) == ((15,), (30,))
    assert len([name for name in dict(deeper.module.named_children())["body"]._modules]) == 30
    copy, template = (
        deeper.module.get_submodule("body.b30.conv"),
        deeper.module.get_submodule("body.b15.conv"),
    )
    assert copy.weight.shape == template.weight.shape and not torch.equal(copy.weight, template.weight)
    shallower = scale_model(base, 0.5, "d", method="graph")
    assert shallower.after.depths == (8,)  # 15 * 0.5 = 7.5 -> 8 (half to even)
    for scaled in (deeper, shallower):
        x = torch.randn(1, 1, 40, 40)
        with torch.no_grad():
            assert scaled.module.eval()(x).shape == x.shape
    ratio = deeper.costs()["ratios"]["flops"]
    assert 1.85 < ratio < 2.0  # the first and last layers do not double


def test_depth_only_scaling_keeps_every_weight():
    model = torchvision.models.resnet18()
    scaled = scale_model(model, 2, "d", (3, 32, 32))  # 2 blocks per stage -> 4
    assert scaled.after.depths == (4, 4, 4, 4)
    state = scaled.module.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name
    assert "layer1.3.conv1.weight" in state and "layer1.4.conv1.weight" not in state


def test_a_stage_without_repeatable_blocks_is_reported():
    with torch.device("meta"):
        model = torchvision.models.mobilenet_v2()
    scaled = scale_model(model, 2, "d", (3, 64, 64))
    assert scaled.after.depths == (1, 4, 6, 8, 6, 6, 1)
    assert sum("none can be repeated" in note for note in scaled.notes) == 2, scaled.notes


class LoopNet(torch.nn.Module):
    """A user's net: blocks in a ModuleList, the residual add written in the parent's forward."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()) for _ in range(4)
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("factor,depth", [(2, 8), (0.5, 2)])
def test_blocks_whose_residual_is_in_the_parent(factor, depth):
    scaled = scale_model(LoopNet(), factor, "d", (3, 16, 16))
    assert (scaled.before.depths, scaled.after.depths) == ((4,), (depth,))
    assert (
        sum(1 for node in scaled.module.graph.nodes if node.target is operator.add) == depth
    )  # residuals kept
    with torch.no_grad():
        assert scaled.module(torch.randn(1, 3, 16, 16)).shape == (1, 10)
