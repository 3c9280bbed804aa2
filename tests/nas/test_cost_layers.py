"""Exact single-layer counts, computed by hand from the formulas in nas/cost/counter.py's docstring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.cost import count
from nas.errors import CaptureError
from nas.graph import capture


def costs(module: nn.Module, shape):
    report = count(capture(module, shape))
    return report.flops, report.macs, report.acts, report.params


@pytest.mark.parametrize(
    "layer,shape,expected",
    [
        # out 8x5x5 = 200 elements; macs 200*3*3*3; flops + 200 bias adds; params 8*27 + 8
        (nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 9, 9), (5600, 5400, 200, 224)),
        # grouped: out 16x6x6 = 576; macs 576 * (8/4) * 9
        (nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False), (8, 6, 6), (10368, 10368, 576, 16 * 2 * 9)),
        # depthwise 5x5: out 8x7x7 = 392; macs 392 * 25
        (nn.Conv2d(8, 8, 5, padding=2, groups=8), (8, 7, 7), (10192, 9800, 392, 8 * 25 + 8)),
        # dilated: out 4x10x10 = 400; macs 400 * 4 * 9
        (nn.Conv2d(4, 4, 3, padding=2, dilation=2, bias=False), (4, 10, 10), (14400, 14400, 400, 144)),
        # non-square kernel and stride: out 3 x 5 x 3 = 45; macs 45 * 2 * 3
        (nn.Conv2d(2, 3, (1, 3), stride=(1, 2), bias=False), (2, 5, 8), (270, 270, 45, 18)),
        # 'same' padding with an even kernel
        (nn.Conv2d(2, 2, 4, padding="same", bias=False), (2, 6, 6), (2 * 36 * 2 * 16,) * 2 + (72, 64)),
        # max-pool 3x3 s2 p1: out 4x4x4 = 64 activations, no flops
        (nn.MaxPool2d(3, 2, 1), (4, 8, 8), (0, 0, 64, 0)),
        (nn.MaxPool2d(2, 2, ceil_mode=True), (4, 7, 7), (0, 0, 64, 0)),
        (nn.AvgPool2d(2), (4, 8, 8), (0, 0, 64, 0)),
        # global pooling is not an activation; a non-global adaptive pool is
        (nn.AdaptiveAvgPool2d(1), (4, 8, 8), (0, 0, 0, 0)),
        (nn.AdaptiveAvgPool2d(2), (4, 8, 8), (0, 0, 16, 0)),
        # BN and activations cost nothing under the convention, but their parameters count
        (nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()), (4, 8, 8), (0, 0, 0, 8)),
    ],
)
def test_single_layer(layer, shape, expected):
    assert costs(layer, shape) == expected


def test_linear_with_and_without_bias():
    assert costs(nn.Sequential(nn.Flatten(), nn.Linear(10, 5)), (10, 1, 1)) == (55, 50, 5, 55)
    assert costs(nn.Sequential(nn.Flatten(), nn.Linear(10, 5, bias=False)), (10, 1, 1)) == (50, 50, 5, 50)


class FunctionalNet(nn.Module):
    """Functional conv, linear and matmul on parameters (get_attr nodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.bias = nn.Parameter(torch.randn(6))
        self.fc = nn.Parameter(torch.randn(7, 6))
        self.mat = nn.Parameter(torch.randn(5, 4))

    def forward(self, x):
        y = F.conv2d(x, self.weight, self.bias, stride=1, padding=1)  # 6x5x5 = 150 out; macs 150*27
        z = F.linear(y.mean((2, 3)), self.fc)  # 7 out; macs 7*6
        w = torch.matmul(y.flatten(2)[:, :, :5], self.mat)  # (1,6,5)@(5,4): 24 out; macs 24*5
        return z.sum() + w.sum()


def test_functional_ops_and_matmul():
    flops, macs, acts, params = costs(FunctionalNet(), (3, 5, 5))
    assert macs == 150 * 27 + 7 * 6 + 24 * 5
    assert flops == macs + 150  # only the conv has a bias
    assert acts == 150 + 7
    assert params == 6 * 27 + 6 + 42 + 20


class InPlaceResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv(x)
        out += x  # torchvision's ResNet style
        out.relu_()
        return out


def test_in_place_add():
    report = count(capture(InPlaceResidual(), (4, 6, 6)))
    assert report.macs == 4 * 36 * 4 * 9 and not report.unknown_ops


class UnknownOp(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1) + torch.fft.fft2(x).real


def test_unknown_ops_are_listed_not_zero():
    report = count(capture(UnknownOp(), (2, 4, 4)))
    assert len(report.unknown_ops) == 2 and all(n == 1 for n in report.unknown_ops.values())
    assert any("cumsum" in op for op in report.unknown_ops) and any("fft2" in op for op in report.unknown_ops)


def test_cat_of_mismatched_shapes_is_an_error():
    class Bad(nn.Module):
        def forward(self, x):
            return torch.cat([x, x[:, :, :2]], dim=1)

    with pytest.raises(CaptureError, match="torch.cat"):
        capture(Bad(), (2, 4, 4))


def test_shapes_by_formula_equal_real_shapes():
    """The formula path (conv, pools with ceil mode, cat, mean) agrees with running the layers for real."""
    from torch.fx.passes.shape_prop import ShapeProp

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 5, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
            self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.avg = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True)

        def forward(self, x):
            y = self.a(x)
            p = self.pool(y)
            z = torch.cat([p, self.avg(y)[:, :, : p.shape[2], : p.shape[3]]], dim=1)
            return F.max_pool2d(z, 2, ceil_mode=True).mean((2,), keepdim=True)

    module = capture(Net(), (3, 13, 11))
    meta = {n.name: n.meta.get("shape") for n in module.graph.nodes}
    ShapeProp(module).propagate(torch.randn(1, 3, 13, 11))
    for node in module.graph.nodes:
        if "tensor_meta" in node.meta and hasattr(node.meta["tensor_meta"], "shape"):
            assert meta[node.name] == tuple(node.meta["tensor_meta"].shape), node.name
