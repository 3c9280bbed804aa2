"""The DCLS kernel construction (``operators.dcls_kernel``): its kernel and gradients against autograd over the
papers' formulas written plainly, finite differences, and the size of its graph."""

from __future__ import annotations

import pytest
import torch

from operators.dcls_kernel import SIGMA_FLOOR, KernelShape, build_kernel, window_origin


def _formula_kernel(weight, positions, spreads, interpolation, shape: KernelShape) -> torch.Tensor:
    """The kernel straight from the papers' math with autograd ops: per tap, a separable profile per axis."""
    height, width = shape.height, shape.width
    rows = (positions[0] + window_origin(height)).clamp(0, height - 1).unsqueeze(-1)  # (O, I, K, 1)
    cols = (positions[1] + window_origin(width)).clamp(0, width - 1).unsqueeze(-1)
    cells_h = torch.arange(height, dtype=weight.dtype)
    cells_w = torch.arange(width, dtype=weight.dtype)
    if interpolation == "gauss":
        sigma_h = (spreads[0].abs() + SIGMA_FLOOR).unsqueeze(-1)
        sigma_w = (spreads[1].abs() + SIGMA_FLOOR).unsqueeze(-1)
        a = torch.exp(-((cells_h - rows) ** 2) / (2 * sigma_h**2))
        b = torch.exp(-((cells_w - cols) ** 2) / (2 * sigma_w**2))
        a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    else:  # shares 1 - t and t at floor(c) and floor(c) + 1, t differentiable (the derivative from above)
        lower_h, lower_w = rows.detach().floor(), cols.detach().floor()
        t_h, t_w = rows - lower_h, cols - lower_w
        a = (1 - t_h) * (cells_h == lower_h) + t_h * (cells_h == lower_h + 1)
        b = (1 - t_w) * (cells_w == lower_w) + t_w * (cells_w == lower_w + 1)
    return torch.einsum("oik,oikh,oikw->oihw", weight, a, b)


def _parameters(shape: KernelShape, interpolation: str, seed: int, spread_out: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    o, i, k = shape.out_channels, shape.in_per_group, shape.kernel_count
    weight = torch.randn(o, i, k, generator=gen, dtype=torch.float64)
    extent = torch.tensor([shape.height, shape.width], dtype=torch.float64).view(2, 1, 1, 1)
    # offsets over the window and a margin past it (clamped taps), kept off integers for bilinear's kinks
    positions = (torch.rand(2, o, i, k, generator=gen, dtype=torch.float64) - 0.5) * (
        extent + spread_out
    ) + 0.37
    spreads = None
    if interpolation == "gauss":
        spreads = torch.rand(2, o, i, k, generator=gen, dtype=torch.float64) - 0.3  # some negative
    return [t.requires_grad_() if t is not None else None for t in (weight, positions, spreads)]


SHAPES = [
    KernelShape(4, 3, 5, 7, 7),
    KernelShape(3, 2, 4, 5, 9),  # non-square window
    KernelShape(2, 1, 1, 4, 4),  # one tap, even window
    KernelShape(1, 1, 3, 6, 3),  # one filter, a window taller than wide
    KernelShape(16, 12, 3, 5, 5),  # 192 filters
    KernelShape(20, 16, 2, 3, 4),  # 320 filters, non-square window
    KernelShape(5, 1, 34, 17, 17),  # many taps in a large window (the depthwise benchmark's)
]


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernel_and_gradients_equal_autograd_over_the_formula(interpolation, shape):
    weight, positions, spreads = _parameters(shape, interpolation, seed=shape.kernel_count, spread_out=3.0)
    grid = torch.arange(max(shape.height, shape.width), dtype=torch.float64)
    inputs = [t for t in (weight, positions, spreads) if t is not None]
    kernel = build_kernel(weight, positions, spreads, grid, interpolation, shape)
    expected = _formula_kernel(weight, positions, spreads, interpolation, shape)
    torch.testing.assert_close(kernel, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn(kernel.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((kernel * cotangent).sum(), inputs)
    expected_grads = torch.autograd.grad((expected * cotangent).sum(), inputs)
    for name, got, want in zip(("weight", "positions", "spreads"), grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_gradcheck(interpolation):
    shape = KernelShape(2, 2, 3, 5, 4)
    weight, positions, spreads = _parameters(shape, interpolation, seed=7)
    grid = torch.arange(5, dtype=torch.float64)
    if interpolation == "gauss":
        fn = lambda w, p, s: build_kernel(w, p, s, grid, "gauss", shape)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (weight, positions, spreads))
    else:
        fn = lambda w, p: build_kernel(w, p, None, grid, "bilinear", shape)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (weight, positions))


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_the_operator_exports_without_collapsing(interpolation):
    """torch.export traces the construction with the conv, without collapsing the operator first."""
    from operators.dcls import DclsConv2d

    torch.manual_seed(0)
    op = DclsConv2d(4, 6, 3, padding=1, kernel_count=5, dilated_kernel_size=5, interpolation=interpolation)
    x = torch.randn(2, 4, 9, 9)
    program = torch.export.export(op, (x,))
    torch.testing.assert_close(program.module()(x), op(x))


def test_layers_of_other_shapes_and_dtypes_in_turn_each_get_their_own_kernel():
    """Constructions of several shapes and dtypes, one after the other, twice: nothing carries over between them."""
    cases = []
    for shape, dtype in [
        (KernelShape(4, 3, 5, 7, 7), torch.float64),
        (KernelShape(3, 2, 4, 5, 9), torch.float64),
        (KernelShape(4, 3, 5, 7, 7), torch.float32),
        (KernelShape(2, 2, 6, 5, 5), torch.float64),
    ]:
        for interpolation in ("gauss", "bilinear"):
            params = [
                p.detach().to(dtype).requires_grad_() if p is not None else None
                for p in _parameters(shape, interpolation, seed=len(cases), spread_out=2.0)
            ]
            cases.append((shape, interpolation, params))
    for _ in range(2):
        for shape, interpolation, params in cases:
            grid = torch.arange(max(shape.height, shape.width), dtype=params[0].dtype)
            inputs = [p for p in params if p is not None]
            kernel = build_kernel(*params, grid, interpolation, shape)
            expected = _formula_kernel(*params, interpolation, shape)
            tolerance = {"rtol": 1e-5, "atol": 1e-6} if params[0].dtype == torch.float32 else {}
            torch.testing.assert_close(kernel, expected, **tolerance)
            got = torch.autograd.grad(kernel.square().sum(), inputs)
            want = torch.autograd.grad(expected.square().sum(), inputs)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, **tolerance)


def test_channels_last_parameters_read_as_their_shape_says():
    """``module.to(memory_format=channels_last)`` restrides the 4-D positions and spreads; the taps are read by
    shape, not by assumed strides."""
    from operators.dcls import DclsConv2d

    torch.manual_seed(0)
    op = DclsConv2d(6, 4, 3, padding=1, kernel_count=5, dilated_kernel_size=5)
    x = torch.randn(2, 6, 8, 8)
    expected = op(x)
    moved = op.to(memory_format=torch.channels_last)
    assert not moved.positions.is_contiguous()
    torch.testing.assert_close(moved(x), expected)


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_off_the_cpu_every_tensor_stays_on_the_parameters_device(interpolation, shape):
    """On the meta device (shapes and devices only, no GPU needed) a tensor made on the CPU by mistake would fail the
    forward or the backward."""
    o, i, k = shape.out_channels, shape.in_per_group, shape.kernel_count
    weight = torch.randn(o, i, k, device="meta", requires_grad=True)
    positions = torch.randn(2, o, i, k, device="meta", requires_grad=True)
    spreads = torch.randn(2, o, i, k, device="meta", requires_grad=True) if interpolation == "gauss" else None
    grid = torch.arange(max(shape.height, shape.width), dtype=torch.float32, device="meta")
    kernel = build_kernel(weight, positions, spreads, grid, interpolation, shape)
    assert kernel.device.type == "meta" and kernel.shape == (o, i, shape.height, shape.width)
    kernel.sum().backward()
    for parameter in (weight, positions, spreads):
        if parameter is not None:
            assert parameter.grad.device.type == "meta" and parameter.grad.shape == parameter.shape


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_the_operator_compiles(interpolation):
    """torch.compile traces the construction, forward and backward; ``aot_eager`` needs no C++ compiler."""
    from operators.dcls import DclsConv2d

    torch.manual_seed(0)
    op = DclsConv2d(4, 6, 3, padding=1, kernel_count=5, dilated_kernel_size=5, interpolation=interpolation)
    x = torch.randn(2, 4, 9, 9)
    compiled = torch.compile(op, backend="aot_eager", fullgraph=False)
    compiled(x).square().sum().backward()
    got = [p.grad.clone() for p in op.parameters()]
    op.zero_grad()
    expected = op(x)
    expected.square().sum().backward()
    torch.testing.assert_close(compiled(x), expected)
    for a, b in zip(got, [p.grad for p in op.parameters()]):
        torch.testing.assert_close(a, b)


class _Construction(torch.nn.Module):
    def __init__(self, shape: KernelShape, interpolation: str) -> None:
        super().__init__()
        self.shape, self.interpolation = shape, interpolation
        self.register_buffer("grid", torch.arange(max(shape.height, shape.width), dtype=torch.float32))

    def forward(self, weight, positions, spreads):
        return build_kernel(weight, positions, spreads, self.grid, self.interpolation, self.shape)


# ops that compute nothing (views, metadata)
_VIEWS = ("reshape", "view", "slice", "unsqueeze", "transpose", "unbind", "getitem", "detach", "assert")


def _graph_ops(shape: KernelShape, interpolation: str) -> list[str]:
    """The computing ops of the construction's exported graph, in order."""
    o, i, k = shape.out_channels, shape.in_per_group, shape.kernel_count
    inputs = (torch.randn(o, i, k), torch.randn(2, o, i, k), torch.randn(2, o, i, k))
    program = torch.export.export(_Construction(shape, interpolation), inputs)
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    return [target for target in targets if not any(view in target for view in _VIEWS)]


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_the_construction_is_a_few_ops_whatever_the_filters_and_taps(interpolation):
    """A few large ops over all filters and taps at once: the same graph for 2 filters of 1 tap and 4096 filters of
    34 taps (no loop over either), one batched matrix product, and few ops in all."""
    small = _graph_ops(KernelShape(2, 1, 1, 7, 7), interpolation)
    large = _graph_ops(KernelShape(64, 64, 34, 7, 7), interpolation)
    assert small == large
    assert sum("bmm" in target for target in small) == 1
    assert len(small) <= 20, small


def _subnormal(tensor: torch.Tensor) -> int:
    return int(((tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)).sum())


def test_narrow_gaussians_far_from_a_cell_make_no_subnormal_numbers():
    """Taps in one corner with the narrowest Gaussian: the formula's kernel holds subnormal numbers in the far
    cells (which cost a CPU some hundred times a normal multiply, in the construction and in the conv); the
    construction's kernel and gradients hold none, and equal the formula's within float32's resolution."""
    shape = KernelShape(8, 4, 3, 7, 7)
    o, i, k = shape.out_channels, shape.in_per_group, shape.kernel_count
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(o, i, k, generator=generator).requires_grad_()
    positions = (-3.0 + 0.5 * torch.rand(2, o, i, k, generator=generator)).requires_grad_()
    spreads = torch.zeros(2, o, i, k, requires_grad=True)
    grid = torch.arange(7.0)
    expected = _formula_kernel(weight, positions, spreads, "gauss", shape)
    assert _subnormal(expected) > 0
    kernel = build_kernel(weight, positions, spreads, grid, "gauss", shape)
    assert _subnormal(kernel) == 0
    torch.testing.assert_close(kernel, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())
    for gradient in torch.autograd.grad(kernel, (weight, positions, spreads), torch.ones_like(kernel)):
        assert _subnormal(gradient) == 0
