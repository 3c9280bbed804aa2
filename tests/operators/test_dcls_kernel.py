"""The DCLS kernel construction (``operators.dcls_kernel``): its hand-written backward against autograd over the
papers' formulas written plainly, finite differences, and the scratch memory it borrows."""

from __future__ import annotations

import threading

import pytest
import torch

from operators.dcls_kernel import SIGMA_FLOOR, KernelShape, build_kernel, window_origin
from operators.scratch import SCRATCH, Carve, Scratch


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
    KernelShape(1, 1, 3, 6, 3),  # one filter: every (K, N) view is trivially contiguous
    KernelShape(16, 12, 3, 5, 5),  # 192 filters: two blocks of 96
    KernelShape(20, 16, 2, 3, 4),  # 320 filters: four blocks of 80, non-square window
    KernelShape(131, 2, 2, 3, 3),  # 262 filters, no divisor from 32 to 128: one block
]


@pytest.mark.parametrize(
    ("shape", "block"),
    [
        (SHAPES[0], 12),
        (SHAPES[4], 96),
        (SHAPES[5], 80),
        (SHAPES[6], 262),
        (KernelShape(64, 64, 9, 7, 7), 128),
    ],
    ids=str,
)
def test_filters_are_laid_out_in_blocks_that_divide_them(shape, block):
    assert (shape.block, shape.blocks) == (block, shape.filters // block)


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


def test_results_never_share_the_scratch():
    """A second construction reuses the scratch; the first kernel and its gradients must not change."""
    shape = KernelShape(3, 2, 4, 5, 5)
    grid = torch.arange(5, dtype=torch.float64)
    first_params = _parameters(shape, "gauss", seed=1)
    second_params = _parameters(shape, "gauss", seed=2)
    first = build_kernel(*first_params, grid, "gauss", shape)
    kept = first.detach().clone()
    second = build_kernel(*second_params, grid, "gauss", shape)
    assert torch.equal(first, kept)
    (first.sum() + second.square().sum()).backward()  # two graphs alive, then one backward through both
    for params, kernel_fn in ((first_params, lambda k: k.sum()), (second_params, lambda k: k.square().sum())):
        fresh = [p.detach().clone().requires_grad_() for p in params]
        kernel_fn(_formula_kernel(*fresh, "gauss", shape)).backward()
        for used, reference in zip(params, fresh):
            torch.testing.assert_close(used.grad, reference.grad)


def test_a_busy_scratch_falls_back_to_new_tensors():
    shape = KernelShape(2, 2, 3, 5, 5)
    grid = torch.arange(5, dtype=torch.float64)
    params = _parameters(shape, "gauss", seed=3)
    expected = _formula_kernel(*params, "gauss", shape)
    with SCRATCH.borrow(params[0], 10):  # held here, as another thread would
        torch.testing.assert_close(build_kernel(*params, grid, "gauss", shape), expected)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(build_kernel(*params, grid, "gauss", shape)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        torch.testing.assert_close(result, expected)


def test_scratch_lends_one_buffer_and_allocates_past_it():
    scratch = Scratch(limit_bytes=1024)
    like = torch.zeros(1)
    with scratch.borrow(like, 100) as carve:
        a, b = carve.take(10, 5), carve.take(50)
        assert a.data_ptr() + 50 * 4 == b.data_ptr()  # consecutive views of one buffer
        c = carve.take(2)  # past the 100 lent elements: a tensor of its own
        assert c.untyped_storage().data_ptr() != a.untyped_storage().data_ptr()
    with scratch.borrow(like, 100) as carve:
        assert carve.take(10, 5).data_ptr() == a.data_ptr()  # kept for the next call
    with scratch.borrow(like, 1000) as carve:  # 4000 bytes: over the limit, nothing lent
        assert isinstance(carve, Carve) and carve.take(3).untyped_storage().nbytes() == 12


@pytest.mark.parametrize("interpolation", ["gauss", "bilinear"])
def test_the_operator_exports_without_collapsing(interpolation):
    """torch.export traces the autograd function inline; its in-place steps must not trip autograd there."""
    from operators.dcls import DclsConv2d

    torch.manual_seed(0)
    op = DclsConv2d(4, 6, 3, padding=1, kernel_count=5, dilated_kernel_size=5, interpolation=interpolation)
    x = torch.randn(2, 4, 9, 9)
    program = torch.export.export(op, (x,))
    torch.testing.assert_close(program.module()(x), op(x))


def test_scratch_plans_are_kept_per_key_and_place_and_dropped_with_their_buffer():
    scratch = Scratch(limit_bytes=4096)
    like = torch.zeros(1)
    made = []

    def build(carve):
        made.append(carve.take(4, 5))
        return made[-1]

    with scratch.borrow(like, 100) as carve:
        first = carve.plan("a", build)
        after = carve.take(3)  # carved past the plan
    with scratch.borrow(like, 100) as carve:
        assert carve.plan("a", build) is first and len(made) == 1  # kept: the same views, not made again
        assert carve.take(3).data_ptr() == after.data_ptr()  # and the carve moved past it as before
    with scratch.borrow(like, 100) as carve:
        carve.take(7)
        moved = carve.plan("a", build)  # another place in the buffer: made anew there
        assert len(made) == 2 and moved.data_ptr() == first.data_ptr() + 7 * 4
    with scratch.borrow(like, 500) as carve:  # a larger buffer replaces the old one and its plans
        again = carve.plan("a", build)
        assert len(made) == 3 and again.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
    with scratch.borrow(like, 10_000) as carve:  # nothing lent: built each time, never kept
        carve.plan("a", build)
        carve.plan("a", build)
        assert len(made) == 5


def test_layers_of_other_shapes_and_dtypes_in_turn_each_get_their_own_kernel():
    """Workspaces of several shapes and dtypes share the one scratch buffer per dtype, one after the other."""
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
    """Off the CPU no scratch is lent and the workspace is allocated per call; on the meta device (shapes and
    devices only, no GPU needed) a tensor made on the CPU by mistake would fail the forward or the backward."""
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
    """torch.compile traces the construction (no scratch while compiling); ``aot_eager`` needs no C++ compiler."""
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
