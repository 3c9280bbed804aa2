"""Channel groups and width scaling of small graphs whose answer is known by hand."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from nas.graph import capture
from nas.scaling import scale_model
from nas.scaling.channel_algebra import ChannelAlgebra, Expr, Kind
from nas.scaling.channel_groups import analyze_channels


def add_sixteen_biases(x: torch.Tensor) -> torch.Tensor:
    """Shape-preserving, but only for 16 channels: the analysis cannot know (a wrapped leaf function)."""
    return x + torch.ones(16, 1, 1, device=x.device)


torch.fx.wrap("add_sixteen_biases")


def scaled(model: nn.Module, rule: str = "w", factor: float = 4.0, shape=(3, 16, 16)):
    result = scale_model(model, factor, rule, shape, match_flops=False)
    with torch.no_grad():
        output = result.module.eval()(torch.randn(2, *result.input_shape))
    return result, output


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 32, 3, padding=1, groups=16)  # depthwise, multiplier 2
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=8)  # group width 4
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(x + self.conv(x))  # residual: stem and conv outputs are one group
        x = self.grouped(self.depthwise(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_residual_depthwise_grouped_and_head():
    result, output = scaled(Residual(), "w", 4)  # w = 2, g = 1: group widths kept
    module = result.module
    assert (module.stem.in_channels, module.stem.out_channels, module.conv.out_channels) == (3, 32, 32)
    assert module.bn.num_features == 32
    assert (module.depthwise.in_channels, module.depthwise.out_channels, module.depthwise.groups) == (
        32,
        64,
        32,
    )
    assert (module.grouped.out_channels, module.grouped.groups) == (64, 16)  # group width 4 kept
    assert (module.fc.in_features, module.fc.out_features) == (64, 10)  # the classes are kept
    assert output.shape == (2, 10) and result.notes == []


def test_group_width_scales_with_g():
    result, _ = scaled(Residual(), "wg", 4)  # w = g = 2: group width 4 -> 8, as many groups as before
    assert (result.module.grouped.out_channels, result.module.grouped.groups) == (64, 8)


class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 12, 3, padding=1)
        self.c = nn.Conv2d(20, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        return self.c(torch.cat([a, self.b(a)], dim=1))


def test_concatenation_sums_independent_groups():
    result, output = scaled(Dense(), "w", 4, (3, 8, 8))
    module = result.module
    assert (module.a.out_channels, module.b.out_channels, module.c.in_channels) == (16, 24, 40)
    assert module.c.out_channels == 16 and output.shape == (2, 16, 8, 8)  # the output is kept


class Shuffle(nn.Module):
    """A ShuffleNetV2 unit: chunk, branch, concatenate, channel shuffle with sizes computed at run time."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, padding=1)
        self.branch = nn.Conv2d(12, 12, 1)
        self.head = nn.Conv2d(24, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.stem(x).chunk(2, dim=1)
        x = torch.cat([x1, self.branch(x2)], dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.head(x)


def test_chunk_and_channel_shuffle_scale_together():
    result, output = scaled(Shuffle(), "w", 4, (3, 8, 8))
    module = result.module
    assert module.stem.out_channels == 48 and module.branch.in_channels == module.branch.out_channels == 24
    assert module.head.in_channels == 48 and output.shape == (2, 5, 8, 8)


class Opaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(8, 16, 1)
        self.c = nn.Conv2d(16, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b(self.a(x)[:, :8])  # indexing channels: not understood
        return self.c(x)


def test_an_op_not_understood_keeps_its_channels_and_says_why():
    result, output = scaled(Opaque(), "w", 4, (3, 8, 8))
    module = result.module
    assert module.a.out_channels == 16  # kept: indexed by a constant slice
    assert module.b.out_channels == 32 and module.c.in_channels == 32  # the rest scales
    assert any("a" in note and "tensor indexing" in note for note in result.notes), result.notes
    assert output.shape == (2, 16, 8, 8)


class FixedReshape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(16, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        n, _, h, w = x.shape
        x = x.view(n, 2, 8, h, w).transpose(1, 2).reshape(n, 16, h, w)  # literal channel counts
        return self.b(x)


def test_a_reshape_with_fixed_sizes_is_reported():
    result, output = scaled(FixedReshape(), "w", 4, (3, 8, 8))
    assert result.module.a.out_channels == 16 and result.module.b.in_channels == 16
    assert any("reshape with fixed sizes" in note for note in result.notes), result.notes
    assert output.shape == (2, 16, 8, 8)


class SpatialGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.gate = nn.Conv2d(16, 1, 1)  # one channel, broadcast over all of them
        self.b = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        return self.b(x * torch.sigmoid(self.gate(x)))


def test_a_broadcast_channel_stays_one():
    result, output = scaled(SpatialGate(), "w", 4, (3, 8, 8))
    assert result.module.gate.out_channels == 1 and result.module.a.out_channels == 32
    assert output.shape == (2, 8, 8, 8)


class WrappedLeaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(16, 16, 1)
        self.c = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(add_sixteen_biases(self.a(x))))


def test_a_wrong_guess_is_undone_and_retried():
    """The analysis takes the wrapped function for an elementwise op; the rebuilt graph fails there, so that
    node's channels are kept and the scaling retried: the result runs."""
    result, output = scaled(WrappedLeaf(), "w", 4, (3, 8, 8))
    assert result.module.a.out_channels == 16 and result.module.b.in_channels == 16
    assert result.module.b.out_channels == 32 and result.module.c.in_channels == 32
    assert any("rebuild failed" in note for note in result.notes), result.notes
    assert output.shape == (2, 4, 8, 8)


def test_unchanged_modules_keep_their_weights():
    model = Residual()
    result = scale_model(model, 4, "r", (3, 16, 16))  # resolution only: no module changes
    assert result.input_shape == (3, 32, 32)
    for name, tensor in model.state_dict().items():
        assert torch.equal(result.module.state_dict()[name], tensor), name
    assert result.module.stem.weight is not model.stem.weight  # a copy: training it leaves the model alone


def test_groups_tied_by_a_residual_add():
    module = capture(Residual(), (3, 8, 8), batch_size=2)
    analysis = analyze_channels(module)
    values = {node.name: value for node, value in analysis.values.items()}
    algebra = analysis.algebra
    stem, conv = values["stem"][1], values["conv"][1]
    assert algebra.find(stem.atoms[0]) == algebra.find(conv.atoms[0])
    assert values["depthwise"][1] == stem.times(2)  # depthwise keeps its input's channels, times 2
    assert algebra.is_fixed(values["x"][1].atoms[0])  # the input


def test_algebra_solves_proportional_groups_with_divisors():
    algebra = ChannelAlgebra()
    whole = algebra.new_atom(116, Kind.FREE, "whole")
    half = algebra.part(Expr.atom(whole), 1, 2, "half")  # 58 channels tied to the 116
    other = algebra.new_atom(24, Kind.FREE, "other")
    algebra.require(Expr.atom(other), 12, "groups of 12")
    sizes, _ = algebra.solve(1.7411)
    assert (
        sizes[whole] == 208 and sizes[half.atoms[0]] == 104
    )  # 202 -> multiple of 16 so that the half is of 8
    assert sizes[other] == 48  # 41.8 -> a multiple of lcm(8, 12) = 24
    fixed = algebra.new_atom(10, Kind.FREE, "fixed")
    algebra.fix(Expr.atom(fixed), "kept")
    assert algebra.solve(2.0)[0][fixed] == 10


class Hourglass(nn.Module):
    """Two stride-2 convs, then upsampling and skip concatenations: sizes must stay divisible by 4."""

    def __init__(self) -> None:
        super().__init__()
        self.down1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.down3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2.0)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)
        b = self.down2(a)
        return self.head(torch.cat([self.up(self.down3(b)), b], dim=1))


def test_resolution_falls_back_to_the_total_stride():
    # rule r: r = s^(1/2). At 4x, 64 -> 128, a multiple of 4 that runs
    assert scale_model(Hourglass(), 4, "r", (3, 64, 64)).input_shape == (3, 128, 128)
    # r = 1.0718: 68.6 -> 68 is a multiple of 4, but 68 -> 34 -> 17 -> 9 -> 18 != 17: multiples of the stride 8
    result, output = scaled(Hourglass(), "r", 1.0717734625362931**2, (3, 64, 64))
    assert result.input_shape == (3, 72, 72) and output.shape == (2, 2, 18, 18)


class FixedHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def test_a_resolution_the_model_cannot_take_is_kept_and_said():
    result, output = scaled(FixedHead(), "dwr", 8, (3, 8, 8))
    assert result.input_shape == (3, 8, 8) and any(
        note.startswith("resolution: kept 8x8") for note in result.notes
    )
    assert (
        result.module.conv.out_channels == 24 and result.module.fc.in_features == 24 * 64
    )  # width still scales
    assert output.shape == (2, 10)
