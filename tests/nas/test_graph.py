"""Capture errors, leaf modules, the networkx view and the rewrite API."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import operators
from nas.cost import count
from nas.errors import CaptureError, RewriteError
from nas.graph import (
    Ineligible,
    Selector,
    capture,
    conv_nodes,
    graph_view,
    rewrite,
    rewrite_with_operator,
    selector,
)


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: not symbolically traceable
            return x
        return -x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU())
        self.proj = nn.Conv2d(8, 16, 1, stride=2)
        self.gate = Gate()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        x = self.gate(self.proj(x))
        return self.head(x.mean((2, 3)))


def test_untraceable_model_names_the_module_and_the_fix():
    with pytest.raises(CaptureError) as error:
        capture(Net(), (3, 8, 8))
    message = str(error.value)
    assert "'gate'" in message and "Gate" in message and "leaf" in message
    assert "\n" not in message


def test_leaf_module_makes_it_traceable_and_unknown_to_the_counter():
    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])
    report = count(module)
    assert report.unknown_ops == {"Gate": 1}  # listed, never silently zero
    assert [c.name for c in conv_nodes(module)] == ["stem", "block.0", "proj"]


def test_graph_view_attributes():
    view = graph_view(capture(Net(), (3, 8, 8), leaf_modules=[Gate]))
    assert view.nodes["block.0"]["kind"] == "conv" and view.nodes["block.0"]["groups"] == 8
    assert view.nodes["proj"]["stride"] == (2, 2) and view.nodes["proj"]["shape"] == (1, 16, 4, 4)
    assert view.nodes["block.1"]["kind"] == "norm" and view.nodes["block.1"]["channels"] == 8
    add = next(n for n, a in view.nodes(data=True) if a["kind"] == "add")
    assert set(view.predecessors(add)) == {"stem", "block.2"}


def test_conv_nodes_carry_arguments_and_shapes():
    conv = conv_nodes(capture(Net(), (3, 8, 8), leaf_modules=[Gate]))[2]
    assert conv.spec.kernel_size == (1, 1) and conv.spec.stride == (2, 2)
    assert conv.input_shape == (1, 8, 8, 8) and conv.output_shape == (1, 16, 4, 4)


def test_model_mode_is_kept_and_train_only_branches_drop():
    class AuxNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.aux = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            if self.training:
                return y, self.aux(x)
            return y

    model = AuxNet().train()
    module = capture(model, (3, 4, 4))
    assert model.training and module.training
    assert [c.name for c in conv_nodes(module)] == ["conv"]


def test_rewrite_by_glob_type_and_predicate():
    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])
    x = torch.randn(2, 3, 8, 8)
    before = module(x)
    result = rewrite_with_operator(module, "conv", select=selector(kernel_size=3))
    assert set(result.rewritten) == {"stem", "block.0"}
    torch.testing.assert_close(module(x), before)  # the plain-conv operator keeps the weights

    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])
    result = rewrite_with_operator(module, "conv", select=Selector(names=("block.*",)))
    assert list(result.rewritten) == ["block.0"]
    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])
    result = rewrite_with_operator(module, "conv", select=selector(depthwise=False, stride=1))
    assert list(result.rewritten) == ["stem"]
    assert isinstance(module.stem, operators.get("conv"))


def test_rewrite_skips_with_reason_and_checks_shapes():
    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])

    def build(node, conv):
        if node.spec.groups > 1:
            raise Ineligible("grouped convs are not handled here")
        return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)

    result = rewrite(module, build)
    assert result.skipped == {"block.0": "grouped convs are not handled here"}
    assert set(result.rewritten) == {"stem", "proj"}

    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])
    with pytest.raises(RewriteError, match="'stem'"):
        rewrite(module, lambda node, conv: nn.Conv2d(3, 8, 3, stride=2, padding=1), Selector(names=("stem",)))


def test_unknown_operator_or_parameter_is_a_clear_error():
    module = capture(Net(), (3, 8, 8), leaf_modules=[Gate])
    with pytest.raises(RewriteError, match="unknown operator 'nope'.*known: conv"):
        rewrite_with_operator(module, "nope")
    with pytest.raises(RewriteError, match="no parameter 'bogus'"):
        rewrite_with_operator(module, "conv", {"bogus": 1})
    with pytest.raises(RewriteError, match="unknown selector condition"):
        selector(colour="red")
