"""The ``dcls`` operator: equality with the reference package, geometry, clamping, seeding from a conv.

The reference is the ``dcls`` package's ``Dcls2d`` (test-only dependency). Its parameters map to ours as:
``weight`` (O, I/g, K) as is; ``P`` (2, O, I/g, K) holds (column, row) offsets from cell ``size // 2``, so
``positions = P.flip(0)``; ``SIG`` likewise, ``spreads = SIG.flip(0)``; its bilinear interpolation is ``v1``.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from operators import ConvSpec
from operators.dcls import DclsConv2d

# The package logs on import and on construction that its CUDA paths are missing.
logging.disable(logging.WARNING)
from DCLS.construct.modules import Dcls2d  # noqa: E402

logging.disable(logging.NOTSET)

# nn.Conv2d(padding="same") with an even kernel (a replaced conv below) warns that it pads a copy of the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

PACKAGE_VERSION = {"gauss": "gauss", "bilinear": "v1"}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def _pair(
    interpolation: str, in_channels: int, out_channels: int, groups: int, count: int, window: int, seed: int
):
    """(operator, package module) with the same weights, in-window positions, spreads and bias."""
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)
    reference = Dcls2d(
        in_channels,
        out_channels,
        kernel_count=count,
        dilated_kernel_size=window,
        padding=window // 2,
        groups=groups,
        version=PACKAGE_VERSION[interpolation],
    )
    logging.disable(logging.NOTSET)
    op = DclsConv2d(
        in_channels,
        out_channels,
        window,
        padding=window // 2,
        groups=groups,
        kernel_count=count,
        dilated_kernel_size=window,
        interpolation=interpolation,
    )
    low, high = -(window // 2), window - 1 - window // 2  # the window's cells as offsets from its origin
    with torch.no_grad():
        reference.P.copy_(low + (high - low) * torch.rand(reference.P.shape))
        reference.weight.copy_(torch.randn(reference.weight.shape))
        op.weight.copy_(reference.weight)
        op.positions.copy_(reference.P.flip(0))
        op.bias.copy_(reference.bias)
        if interpolation == "gauss":
            reference.SIG.copy_(0.8 * torch.rand(reference.SIG.shape) - 0.2)  # negative spreads count by |.|
            op.spreads.copy_(reference.SIG.flip(0))
    return op, reference


def _package_kernel(reference: nn.Module) -> torch.Tensor:
    return reference.DCK(reference.weight, reference.P, reference.SIG)


PACKAGE_CASES = [
    # interpolation, in, out, groups, kernel_count, window
    ("gauss", 3, 4, 1, 5, 7),
    ("gauss", 6, 6, 6, 3, 5),
    ("gauss", 4, 4, 4, 9, 6),
    ("bilinear", 3, 4, 1, 9, 5),
    ("bilinear", 6, 6, 6, 6, 7),
    ("bilinear", 4, 6, 2, 4, 9),
]


@pytest.mark.parametrize("interpolation,in_channels,out_channels,groups,count,window", PACKAGE_CASES)
def test_kernel_and_output_equal_the_package(interpolation, in_channels, out_channels, groups, count, window):
    op, reference = _pair(interpolation, in_channels, out_channels, groups, count, window, seed=window)
    with torch.no_grad():
        expected_kernel = _package_kernel(reference)
        kernel = op.dense_kernel()
        assert kernel.shape == expected_kernel.shape
        assert _relative_error(kernel, expected_kernel) <= 1e-5
        x = torch.randn(2, in_channels, 13, 10)  # a non-square input
        expected = reference(x)
        out = op(x)
    assert out.shape == expected.shape
    assert _relative_error(out, expected) <= 1e-5


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_gradients_equal_the_package(interpolation):
    op, reference = _pair(interpolation, 3, 4, 1, 5, 7, seed=3)
    x = torch.randn(1, 3, 9, 11)
    cotangent = torch.randn(1, 4, 9, 11)
    (op(x) * cotangent).sum().backward()
    (reference(x) * cotangent).sum().backward()
    assert _relative_error(op.weight.grad, reference.weight.grad) <= 1e-4
    assert _relative_error(op.positions.grad, reference.P.grad.flip(0)) <= 1e-4
    if interpolation == "gauss":
        assert _relative_error(op.spreads.grad, reference.SIG.grad.flip(0)) <= 1e-4


def _single_tap(interpolation: str, window, row: float, col: float, spreads=(0.0, 0.0)) -> torch.Tensor:
    op = DclsConv2d(
        1,
        1,
        3,
        padding=1,
        bias=False,
        kernel_count=1,
        dilated_kernel_size=window,
        interpolation=interpolation,
    ).double()
    with torch.no_grad():
        op.weight.fill_(2.0)
        op.positions.copy_(torch.tensor([row, col], dtype=torch.float64).view(2, 1, 1, 1))
        if op.spreads is not None:
            op.spreads.copy_(torch.tensor(spreads, dtype=torch.float64).view(2, 1, 1, 1))
        return op.dense_kernel()[0, 0]


def test_non_square_window_bilinear_by_hand():
    kernel = _single_tap("bilinear", (3, 7), row=0.25, col=-1.5)  # origin (1, 3): cell (1.25, 1.5)
    expected = torch.zeros(3, 7, dtype=torch.float64)
    expected[1, 1], expected[1, 2] = 2 * 0.75 * 0.5, 2 * 0.75 * 0.5
    expected[2, 1], expected[2, 2] = 2 * 0.25 * 0.5, 2 * 0.25 * 0.5
    torch.testing.assert_close(kernel, expected, rtol=0, atol=1e-12)


def test_non_square_window_gauss_by_hand():
    kernel = _single_tap("gauss", (3, 7), row=0.5, col=2.0, spreads=(0.13, -0.73))
    rows = torch.exp(-0.5 * ((torch.arange(3.0, dtype=torch.float64) - 1.5) / 0.40) ** 2)
    cols = torch.exp(-0.5 * ((torch.arange(7.0, dtype=torch.float64) - 5.0) / 1.00) ** 2)
    expected = 2.0 * torch.outer(rows / rows.sum(), cols / cols.sum())
    assert kernel.shape == (3, 7)
    torch.testing.assert_close(kernel, expected, rtol=1e-12, atol=1e-14)


def test_non_square_window_keeps_the_output_shape_and_equals_its_collapse():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    op = DclsConv2d.from_conv(conv, kernel_count=5, dilated_kernel_size=(5, 8), interpolation="gauss")
    assert op.collapsed_spec().kernel_size == (5, 9)  # 8 columns over an odd kernel: one zero column added
    x = torch.randn(1, 2, 11, 14)
    collapsed = op.collapse()
    with torch.no_grad():
        assert op(x).shape == conv(x).shape
        torch.testing.assert_close(collapsed(x), op(x))


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_positions_are_clamped_to_the_window(interpolation):
    inside = _single_tap(interpolation, 5, row=2.0, col=-2.0, spreads=(0.3, 0.3))
    outside = _single_tap(interpolation, 5, row=40.0, col=-7.5, spreads=(0.3, 0.3))
    torch.testing.assert_close(outside, inside, rtol=0, atol=1e-12)
    if interpolation == "bilinear":
        assert outside[4, 0] == 2.0 and outside.sum() == 2.0  # all the mass on the corner cell

    op = DclsConv2d(1, 1, 3, padding=1, kernel_count=1, dilated_kernel_size=5, interpolation=interpolation)
    with torch.no_grad():
        op.positions.copy_(torch.tensor([9.0, -1.0]).view(2, 1, 1, 1))
    op(torch.randn(1, 1, 6, 6)).square().sum().backward()
    assert op.positions.grad[0].abs().item() == 0.0  # past the border: no gradient moves it
    assert op.positions.grad[1].abs().item() > 0.0
    assert op.positions[0].item() == 9.0  # clamping is functional; the parameter is untouched


OUTPUT_SHAPE_CONVS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=4, stride=2, padding=1),
    dict(kernel_size=2, stride=2),
    dict(kernel_size=1, stride=2),
    dict(kernel_size=3, padding=2, dilation=2, stride=2),
    dict(kernel_size=4, padding="same"),
    dict(kernel_size=(3, 5), stride=(2, 1), padding=(1, 2)),
    dict(kernel_size=3, padding=1, padding_mode="replicate"),
]


@pytest.mark.parametrize("conv_kwargs", OUTPUT_SHAPE_CONVS, ids=lambda k: str(sorted(k.items())))
@pytest.mark.parametrize("window", [5, 6, 7, 8])
def test_output_shape_equals_the_replaced_conv(conv_kwargs, window):
    conv = nn.Conv2d(2, 2, **conv_kwargs)
    spec = ConvSpec.from_conv(conv)
    op = DclsConv2d.from_conv(conv, kernel_count=4, dilated_kernel_size=window, interpolation="bilinear")
    collapsed = op.collapse()
    assert op.collapsed_spec().symmetric_padding is not None
    assert all(size in (window, window + 1) for size in op.collapsed_spec().kernel_size)
    with torch.no_grad():
        for height in range(9, 15):
            for width in (9, 12):
                x = torch.randn(1, 2, height, width)
                assert op(x).shape == conv(x).shape == collapsed(x).shape, (height, width)
                assert op(x).shape[-2:] == spec.output_size(height, width)


FROM_CONV_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4),
    dict(in_channels=2, out_channels=4, kernel_size=4, padding="same"),
    dict(in_channels=2, out_channels=2, kernel_size=2, stride=2),
    dict(in_channels=4, out_channels=4, kernel_size=5, padding=2, groups=2, padding_mode="replicate"),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="replicate", bias=False),
    dict(in_channels=2, out_channels=3, kernel_size=(1, 3), padding=(0, 1)),
]


@pytest.mark.parametrize("conv_kwargs", FROM_CONV_CASES, ids=lambda k: str(sorted(k.items())))
@pytest.mark.parametrize("extra_cells", [0, 1, 4])
def test_bilinear_from_conv_reproduces_the_conv(conv_kwargs, extra_cells):
    """Taps on the replaced kernel's grid with its weights: bilinear is then exactly the conv, for any window
    that holds it (odd or even), so the window's placement and padding are right."""
    torch.manual_seed(1)
    conv = nn.Conv2d(**conv_kwargs).double()
    spec = ConvSpec.from_conv(conv)
    extent = max(d * (k - 1) + 1 for k, d in zip(spec.kernel_size, spec.dilation))
    taps = spec.kernel_size[0] * spec.kernel_size[1]
    op = DclsConv2d.from_conv(
        conv, kernel_count=taps + 2, dilated_kernel_size=extent + extra_cells, interpolation="bilinear"
    )
    assert torch.all(op.weight[..., taps:] == 0)  # taps beyond the kernel's start with weight 0
    x = torch.randn(2, spec.in_channels, 11, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(op(x), conv(x), rtol=1e-12, atol=1e-12)


def test_from_conv_keeps_the_largest_taps_when_fewer():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    op = DclsConv2d.from_conv(conv, kernel_count=4, dilated_kernel_size=5, interpolation="gauss")
    flat = conv.weight.detach().reshape(3, 2, 9)
    expected = flat.gather(-1, flat.abs().topk(4, dim=-1).indices)
    torch.testing.assert_close(op.weight.detach(), expected)
    rows, cols = op.positions.detach()
    # the replaced 3x3 grid sits in the middle of the 5x5 window: offsets -1, 0, 1 from its origin
    index = flat.abs().topk(4, dim=-1).indices
    torch.testing.assert_close(rows, (index // 3 - 1).float())
    torch.testing.assert_close(cols, (index % 3 - 1).float())


@pytest.mark.parametrize(
    "window,expected", [(3, [-1, 0, 1]), (4, [-1, 0, 1]), (5, [-1, 0, 1]), (6, [-1, 0, 1])]
)
def test_from_conv_centres_the_replaced_kernel_on_the_window_origin(window, expected):
    """An even window over a 3x3 kernel gets a zero row/column in the collapsed kernel; the window is placed so
    that the seeded taps sit symmetrically around position 0 (the window cell ``size // 2``)."""
    op = DclsConv2d.from_conv(nn.Conv2d(1, 1, 3, padding=1), kernel_count=9, dilated_kernel_size=window)
    rows, cols = op.positions.detach()[:, 0, 0]
    assert sorted(set(rows.tolist())) == expected and sorted(set(cols.tolist())) == expected


def test_gauss_from_conv_is_the_conv_blurred_by_the_initial_spread():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 2, 3, padding=1)
    op = DclsConv2d.from_conv(conv, kernel_count=9, dilated_kernel_size=7, interpolation="gauss")
    kernel = op.dense_kernel().detach()
    # each tap keeps its mass (the Gaussian is normalized): per filter the kernel sums to the conv's sum
    torch.testing.assert_close(kernel.sum(dim=(-1, -2)), conv.weight.detach().sum(dim=(-1, -2)))
    # sigma = 0.23 + 0.27 = 0.5 cell: a tap keeps exp(-2) of its centre value on each axis-neighbour
    single = DclsConv2d(1, 1, 3, padding=1, kernel_count=1, dilated_kernel_size=5, interpolation="gauss")
    with torch.no_grad():
        single.weight.fill_(1.0)
        single.positions.zero_()
        profile = single.dense_kernel()[0, 0, 2]
    torch.testing.assert_close(profile[1] / profile[2], torch.exp(torch.tensor(-2.0)))


def test_bilinear_positions_seeded_on_integers_get_one_sided_gradients():
    """Taps seeded on integer cells are not stuck: their position gradient is the derivative from above."""
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 2, 3, padding=1).double()
    op = DclsConv2d.from_conv(conv, kernel_count=9, dilated_kernel_size=5, interpolation="bilinear")
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    op(x).square().sum().backward()
    gradient = op.positions.grad.clone()
    assert (gradient != 0).double().mean() > 0.9
    step = 1e-6
    for index in [(0, 0, 0, 0), (1, 1, 1, 4), (0, 1, 0, 8)]:
        with torch.no_grad():
            before = op(x).square().sum()
            op.positions[index] += step
            after = op(x).square().sum()
            op.positions[index] -= step
        torch.testing.assert_close(gradient[index], (after - before) / step, rtol=1e-4, atol=1e-6)


def test_eligibility_reasons_and_errors():
    spec = ConvSpec.create(4, 4, 7, padding=3)
    reason = DclsConv2d.eligibility(spec, dilated_kernel_size=5)
    assert isinstance(reason, str) and "window" in reason
    assert DclsConv2d.eligibility(spec, dilated_kernel_size=7) is None
    assert "interpolation" in DclsConv2d.eligibility(spec, interpolation="cubic")
    assert "kernel_count" in DclsConv2d.eligibility(spec, kernel_count=0)
    assert "dilated_kernel_size" in DclsConv2d.eligibility(spec, dilated_kernel_size=(7, 7, 7))
    with pytest.raises(ValueError, match="window"):
        DclsConv2d(4, 4, 7, padding=3, dilated_kernel_size=5)
    with pytest.raises(ValueError, match="cannot replace"):
        DclsConv2d.from_conv(nn.Conv2d(4, 4, 5, dilation=2), dilated_kernel_size=7)


@pytest.mark.parametrize(("padding_mode", "smallest_map"), [("reflect", 2), ("circular", 1)])
def test_padding_that_must_fit_the_map_is_not_widened(padding_mode, smallest_map):
    """Reflect and circular padding must fit in the input map (reflect: under its size), which eligibility does not
    see; the replaced conv's padding is the one known to fit. A window as wide as the replaced kernel keeps it, and
    is then exactly the conv; a wider one is refused with its reason, and would fail on a map the conv handles."""
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode).double()
    spec = ConvSpec.from_conv(conv)
    reason = DclsConv2d.eligibility(spec, dilated_kernel_size=5)
    assert reason is not None and padding_mode in reason and "(2)" in reason and "(1)" in reason
    with pytest.raises(ValueError, match="cannot replace"):
        DclsConv2d.from_conv(conv, dilated_kernel_size=5)
    x = torch.randn(
        1, 2, smallest_map, smallest_map, dtype=torch.float64
    )  # the conv pads it; padding 2 fails
    wide = DclsConv2d(2, 3, 5, padding=2, padding_mode="zeros", dilated_kernel_size=5).double()
    with pytest.raises(RuntimeError):
        nn.functional.conv2d(nn.functional.pad(x, (2, 2, 2, 2), mode=padding_mode), wide.dense_kernel())
    assert DclsConv2d.eligibility(spec, dilated_kernel_size=3) is None
    op = DclsConv2d.from_conv(conv, kernel_count=9, dilated_kernel_size=3, interpolation="bilinear")
    with torch.no_grad():
        torch.testing.assert_close(op(x), conv(x), rtol=1e-12, atol=1e-12)
    assert DclsConv2d.eligibility(spec.with_(padding_mode="replicate"), dilated_kernel_size=5) is None
