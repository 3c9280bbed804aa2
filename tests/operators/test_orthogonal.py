"""The ``orthogonal`` operator (operators/orthogonal.py) and its measuring tools (operators/orthogonal_spectrum.py).

Singular values are checked against the explicit matrix of the circular conv operator and against orthogonium's
implementations where the settings match (stride 1, circular padding).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from operators import ConvSpec
from operators.orthogonal import OrthogonalConv2d, exact_ineligibility
from operators.orthogonal_bcop import bcop_kernel
from operators.orthogonal_spectrum import conv_singular_values, orthogonality_loss


def _circular_conv(x: torch.Tensor, weight: torch.Tensor, stride, dilation, groups) -> torch.Tensor:
    """Circular cross-correlation ``y[p] = sum_a K[a] x[(s p + d a) mod n]`` by tiling the input (no FFT)."""
    extent = [d * (k - 1) for d, k in zip(dilation, weight.shape[-2:])]
    height, width = x.shape[-2:]
    tiled = x.repeat(1, 1, 1 + extent[0] // height + 1, 1 + extent[1] // width + 1)
    tiled = tiled[..., : height + extent[0], : width + extent[1]]
    return F.conv2d(tiled, weight, None, stride, 0, dilation, groups)


def _operator_matrix(weight, size, stride=(1, 1), dilation=(1, 1), groups=1) -> torch.Tensor:
    """The dense (out * H' * W', in * H * W) matrix of the circular conv on a ``size`` grid: column j = A e_j."""
    in_channels = weight.shape[1] * groups
    elements = in_channels * size[0] * size[1]
    basis = torch.eye(elements, dtype=weight.dtype).reshape(elements, in_channels, *size)
    return _circular_conv(basis, weight, stride, dilation, groups).reshape(elements, -1).T


# (out, in / groups, k_h, k_w), grid, stride, dilation, groups
SPECTRUM_CASES = [
    ((4, 4, 3, 3), (6, 6), (1, 1), (1, 1), 1),
    ((3, 5, 3, 3), (6, 8), (2, 2), (1, 1), 1),
    ((6, 2, 2, 3), (8, 6), (2, 1), (2, 1), 2),
    ((2, 3, 5, 5), (4, 4), (1, 1), (1, 1), 1),  # kernel larger than the grid: taps wrap around
    ((8, 1, 2, 2), (6, 6), (2, 2), (1, 1), 1),  # column-orthogonal shape: out > in * s^2
]


@pytest.mark.parametrize("shape,size,stride,dilation,groups", SPECTRUM_CASES)
def test_singular_values_equal_those_of_the_explicit_operator(shape, size, stride, dilation, groups):
    torch.manual_seed(0)
    weight = torch.randn(shape, dtype=torch.float64)
    matrix = _operator_matrix(weight, size, stride, dilation, groups)
    expected = torch.linalg.svdvals(matrix)
    got = conv_singular_values(weight, size, stride, dilation, groups)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def _orthogonal_rows(rows: int, columns: int, dtype=torch.float64) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(max(rows, columns), min(rows, columns), dtype=dtype))
    return q if rows >= columns else q.T  # (rows, columns), orthonormal rows or columns


# row-orthogonal and column-orthogonal, stride 2
@pytest.mark.parametrize("out_channels,in_channels", [(4, 2), (16, 2)])
def test_orthogonality_loss_is_zero_for_orthogonal_strided_convs(out_channels, in_channels):
    torch.manual_seed(1)
    # kernel size = stride: non-overlapping patches, the operator is orthogonal iff the (out, in * 4) matrix is
    weight = _orthogonal_rows(out_channels, in_channels * 4).reshape(out_channels, in_channels, 2, 2)
    assert orthogonality_loss(weight, (2, 2)).abs().item() < 1e-12
    values = conv_singular_values(weight, (8, 8), (2, 2))
    torch.testing.assert_close(values, torch.ones_like(values), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "out_channels,in_channels,kernel,stride,dilation,groups",
    [(4, 4, 3, 1, 1, 1), (6, 4, 3, 2, 1, 1), (16, 2, 3, 2, 1, 1), (4, 4, 3, 1, 2, 2), (3, 6, 5, 2, 1, 1)],
)
def test_orthogonality_loss_is_the_gram_error_per_output_position(
    out_channels, in_channels, kernel, stride, dilation, groups
):
    """Wang et al.'s loss (and Achour et al.'s column correction) = ||A A^T - I||^2 (or ||A^T A - I||^2) of the
    explicit circular operator A, divided by the number of output positions, on a grid without aliasing."""
    torch.manual_seed(2)
    weight = torch.randn(out_channels, in_channels // groups, kernel, kernel, dtype=torch.float64) / kernel
    size = (12, 12)
    matrix = _operator_matrix(weight, size, (stride, stride), (dilation, dilation), groups)
    rows, columns = matrix.shape
    if rows <= columns:
        error = (matrix @ matrix.T - torch.eye(rows, dtype=matrix.dtype)).square().sum()
    else:
        error = (matrix.T @ matrix - torch.eye(columns, dtype=matrix.dtype)).square().sum()
    positions = (size[0] // stride) * (size[1] // stride)
    loss = orthogonality_loss(weight, (stride, stride), (dilation, dilation), groups)
    torch.testing.assert_close(loss, error / positions, rtol=1e-10, atol=1e-10)


EXACT_GEOMETRIES = [
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, padding_mode="circular"),
    dict(in_channels=6, out_channels=4, kernel_size=1),  # row-orthogonal 1x1
    # column-orthogonal
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, padding_mode="circular", bias=False),
    dict(
        in_channels=8,
        out_channels=8,
        kernel_size=(2, 5),
        padding="same",
        padding_mode="circular",
        dilation=2,
        groups=2,
    ),
    dict(in_channels=16, out_channels=16, kernel_size=5, padding=2, padding_mode="circular"),
]


def _randomize_(op: nn.Module, seed: int) -> None:
    """Stand-in for training: move every parameter to an arbitrary value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize(
    "kwargs", EXACT_GEOMETRIES, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items())
)
def test_exact_mode_singular_values_are_one(kwargs):
    spec = ConvSpec.create(**kwargs)
    per_group = min(spec.in_channels, spec.out_channels) // spec.groups
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        torch.manual_seed(0)
        op = OrthogonalConv2d.from_conv(nn.Conv2d(**kwargs), mode="auto").to(dtype)
        assert op.mode == "exact" and op.extra_loss() is None
        for seed, size in ((1, (8, 8)), (2, (7, 10))):
            _randomize_(op, seed)
            values = op.singular_values(size)
            assert values.numel() == spec.groups * size[0] * size[1] * per_group
            assert (values - 1).abs().max().item() <= tolerance
            assert op.deviation(size) <= tolerance
        values = conv_singular_values(
            op.collapse().weight.detach(), (8, 8), spec.stride, spec.dilation, spec.groups
        )
        assert (values - 1).abs().max().item() <= tolerance


def test_exact_mode_forward_preserves_norms():
    """End to end through forward (padding included): column-orthogonal convs preserve every input's norm."""
    torch.manual_seed(3)
    for kwargs in (EXACT_GEOMETRIES[0], EXACT_GEOMETRIES[2], EXACT_GEOMETRIES[3]):
        op = OrthogonalConv2d(**{**kwargs, "bias": False}, mode="exact").double()
        _randomize_(op, 4)
        x = torch.randn(3, kwargs["in_channels"], 7, 9, dtype=torch.float64)
        with torch.no_grad():
            y = op(x)
        assert y.shape[-2:] == x.shape[-2:]
        torch.testing.assert_close(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-12, atol=0)


def test_exact_mode_gradcheck():
    torch.manual_seed(5)
    for kwargs in (
        EXACT_GEOMETRIES[0],
        EXACT_GEOMETRIES[1],
        dict(EXACT_GEOMETRIES[3], in_channels=4, out_channels=6),
    ):
        op = OrthogonalConv2d(**kwargs, mode="exact").double()
        x = torch.randn(1, kwargs["in_channels"], 4, 5, dtype=torch.float64)
        names = [n for n, _ in op.named_parameters()]
        values = tuple(p.detach().clone().requires_grad_() for _, p in op.named_parameters())

        def fn(*param_values, op=op, names=names, x=x):
            return torch.func.functional_call(op, dict(zip(names, param_values)), (x,))

        assert torch.autograd.gradcheck(fn, values, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_from_conv_sets_the_dc_gain_to_the_nearest_orthogonal_matrix():
    torch.manual_seed(6)
    for conv in (nn.Conv2d(6, 4, 1), nn.Conv2d(4, 8, 3, padding=1, padding_mode="circular", groups=2)):
        conv = conv.double()
        op = OrthogonalConv2d.from_conv(conv, mode="exact")
        groups = conv.groups
        dc_conv = conv.weight.detach().sum(dim=(-2, -1)).reshape(groups, conv.out_channels // groups, -1)
        u, _, vh = torch.linalg.svd(dc_conv, full_matrices=False)
        dc_op = op.kernel().detach().sum(dim=(-2, -1)).reshape(dc_conv.shape)
        torch.testing.assert_close(dc_op, u @ vh, rtol=0, atol=1e-12)
        torch.testing.assert_close(op.bias, conv.bias)


def test_mode_resolution_and_eligibility_messages():
    zeros = ConvSpec.create(4, 4, 3, padding=1)
    assert OrthogonalConv2d.resolve_mode(zeros) == "soft"
    assert (
        OrthogonalConv2d.eligibility(zeros) is None
        and OrthogonalConv2d.eligibility(zeros, mode="soft") is None
    )
    reason = OrthogonalConv2d.eligibility(zeros, mode="exact")
    assert reason is not None and "circular" in reason and "1-Lipschitz" in reason
    assert OrthogonalConv2d.describe_mode(zeros).startswith("soft:")
    assert OrthogonalConv2d.describe_mode(zeros, "exact").startswith("ineligible:")
    strided = ConvSpec.create(4, 4, 3, stride=2, padding=1, padding_mode="circular")
    assert "stride" in exact_ineligibility(strided)
    depthwise = ConvSpec.create(4, 4, 3, padding=1, padding_mode="circular", groups=4)
    assert "one channel per group" in exact_ineligibility(depthwise)
    shrinking = ConvSpec.create(4, 4, 3, padding=0, padding_mode="circular")
    assert "not a circular operator" in exact_ineligibility(shrinking)
    circular = ConvSpec.create(4, 4, 3, padding=1, padding_mode="circular")
    assert OrthogonalConv2d.resolve_mode(circular) == "exact"
    assert OrthogonalConv2d.describe_mode(circular).startswith("exact:")
    assert OrthogonalConv2d.resolve_mode(circular, "soft") == "soft"
    with pytest.raises(ValueError, match="stride"):
        OrthogonalConv2d.from_conv(nn.Conv2d(4, 4, 3, stride=2, padding=1), mode="exact")
    with pytest.raises(ValueError, match="mode"):
        OrthogonalConv2d(4, 4, 3, mode="hard")


def test_soft_mode_regularizer_reduces_the_measured_deviation():
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    op = OrthogonalConv2d.from_conv(conv, regularizer_weight=1.0)
    assert op.mode == "soft"
    torch.testing.assert_close(op.weight, conv.weight)
    start_loss, start_deviation = op.orthogonality_loss().item(), op.deviation()
    torch.testing.assert_close(op.extra_loss(), op.orthogonality_loss())
    optimizer = torch.optim.Adam(op.parameters(), lr=0.02)
    for _ in range(300):
        optimizer.zero_grad()
        op.extra_loss().backward()
        optimizer.step()
    assert op.orthogonality_loss().item() < 1e-3 * start_loss
    assert start_deviation > 0.3 and op.deviation() < 0.05


def test_bcop_kernel_shape_and_truncation():
    torch.manual_seed(8)
    head = torch.randn(2, 6, 6, dtype=torch.float64)
    frames = torch.randn(5, 2, 6, 3, dtype=torch.float64)
    kernel = bcop_kernel(head, frames, (3, 4), out_channels=6, in_channels=4)
    assert kernel.shape == (12, 4, 3, 4)
    full = bcop_kernel(head, frames, (3, 4), out_channels=6, in_channels=6)
    torch.testing.assert_close(kernel, full[:, :4])  # column-orthogonal = first `in` columns


# -- comparisons with orthogonium (test-only reference; Sedghi et al. SVD, Delattre et al. Gram iteration, BCOP) --
def test_singular_values_match_orthogonium_sedghi():
    from orthogonium.layers.conv.AOC.fast_block_ortho_conv import conv_singular_values_numpy

    torch.manual_seed(9)
    for groups in (1, 2):
        weight = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64)
        smallest, largest, _ = conv_singular_values_numpy(
            weight.reshape(groups, 6 // groups, -1, 3, 3).numpy(), (8, 8)
        )
        ours = conv_singular_values(weight, (8, 8), groups=groups)
        assert abs(ours.min().item() - float(smallest)) < 1e-10
        assert abs(ours.max().item() - float(largest)) < 1e-10


def test_spectral_norm_matches_orthogonium_gram_iteration():
    from orthogonium.layers.conv.singular_values.delattre24 import compute_delattre2023

    torch.manual_seed(10)
    weight = torch.randn(8, 5, 3, 3, dtype=torch.float64)
    bound = compute_delattre2023(weight.clone(), n=10, n_iter=8).item()  # an upper bound that converges
    ours = conv_singular_values(weight, (10, 10)).max().item()
    assert ours <= bound * (1 + 1e-9)
    assert ours >= bound * (1 - 1e-3)


def test_exact_mode_agrees_with_orthogonium_bcop():
    """Same setting as orthogonium's FastBlockConv2d (stride 1, 'same' circular padding): both kernels are
    orthogonal by our measure, ours is orthogonal by orthogonium's measure, and the output shapes agree."""
    from orthogonium.layers.conv.AOC import FastBlockConv2d
    from orthogonium.layers.conv.AOC.fast_block_ortho_conv import conv_singular_values_numpy

    torch.manual_seed(11)
    kwargs = dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, padding_mode="circular")
    reference = FastBlockConv2d(8, 8, 3, padding="same", padding_mode="circular")
    ours = OrthogonalConv2d(**kwargs, mode="exact")
    _randomize_(ours, 12)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        assert ours(x).shape == reference(x).shape
        reference_values = conv_singular_values(reference.weight.detach().double(), (9, 9))
    assert (reference_values - 1).abs().max().item() < 1e-4
    smallest, largest, _ = conv_singular_values_numpy(
        ours.kernel().detach().double().reshape(1, 8, 8, 3, 3).numpy(), (9, 9)
    )
    assert abs(float(smallest) - 1) < 1e-4 and abs(float(largest) - 1) < 1e-4


def test_exact_mode_training_parameter_count():
    # c = max(6, 4) = 6, rank 3 projectors, k_h + k_w - 2 = 4 blocks: 6 * 6 + 4 * 6 * 3 = 108, plus 4 biases
    op = OrthogonalConv2d(6, 4, 3, padding=1, padding_mode="circular", mode="exact")
    assert op.training_parameter_count() == 112
    assert op.collapse().weight.numel() == 4 * 6 * 9
    grouped = OrthogonalConv2d(
        8, 8, 1, groups=2, bias=False, mode="exact"
    )  # 2 groups of a 4 x 4 head, no blocks
    assert grouped.training_parameter_count() == 32 and grouped.projector_frames is None
