"""Dense kernels of DCLS: taps at real-valued positions, spread onto a window by interpolation.

Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution with Learnable Spacings", ICLR 2023 (bilinear),
and "Dilated Convolution with Learnable Spacings: beyond bilinear interpolation", ICML 2023 workshop (Gaussian).

One filter (an output channel and one input channel of its group) holds ``K`` taps; tap ``k`` has a weight
``w_k`` and a position ``(y_k, x_k)``: offsets in cells from the window origin (``window_origin``), clamped to the
``H x W`` window. The interpolation is separable, so the filter's dense kernel is a sum of outer products of 1-D
profiles::

    kernel[h, w] = sum_k  w_k * a_k(h) * b_k(w)

- bilinear: ``a_k(h) = max(0, 1 - |h - y_k|)``, i.e. ``1 - t`` at ``floor(y_k)`` and ``t`` at ``floor(y_k) + 1``
  (``t`` the fractional part): a tap feeds its 4 neighbouring cells with ``w_k (1 - |dy|)(1 - |dx|)``. The
  derivative with respect to ``y_k`` is taken from above (``-1`` at ``floor(y_k)``, ``+1`` at the next cell), also
  on integer positions where every tap seeded from a conv starts, so such taps are not stuck.
- gauss: ``a_k(h) = exp(-(h - y_k)^2 / (2 sigma_k^2))`` normalized to sum 1 over the window (so the 2-D
  Gaussian, their outer product, sums to 1 and ``w_k`` is the tap's total mass), with
  ``sigma_k = |s_k| + SIGMA_FLOOR`` from a learnable spread ``s_k`` per axis.

Speed: the construction runs on every training step and, at batch 1, costs a large part of what the conv does.
What it costs is the number of passes over memory and of ops dispatched (each a parallel region), not arithmetic
(some 2 million multiply-adds where the conv does 200 million). So the whole construction is one autograd
function, ``SeparableTapKernel``, with a hand-written backward. Its forward for float32 on the CPU runs in C
(``dcls_native``: every step in one pass, compiled on first use); elsewhere (float64, GPUs, traces and compiles,
a machine without a C compiler), and in the backward, the steps are torch ops (``Workspace``), and:

- the per-tap values are laid out ``(K, N)`` with the ``N = out * in/groups`` filters innermost, so every step is
  one long vectorized op; the parameters are read in that order by the first op on them, never copied first;
- both axes go through each step together (one ``(2, K, S, N)`` tensor of profiles) when the window is square;
- the cells are numbered from the window origin, so positions are clamped and used as they are;
- each tap is multiply-added into the kernel's sum, which stays in cache (a broadcast product over all taps
  would write and read a ``(K, H, W, N)`` temporary). The sum is laid out in blocks of filters,
  ``(N / B, H, W, B)`` (``KernelShape.block``), so that the conv's layout is reached by transposing
  ``(H * W, B)`` tiles that stay in cache, about three times faster than one ``(H * W, N)`` transpose;
- the temporaries live in CPU scratch reused from call to call (``scratch``), carved into the same views each time
  (``Workspace``, kept with the scratch: making a view costs as much Python time as a small op), and only the
  parameters are kept for the backward, which recomputes the profiles;
- the kernel returned (and, in the backward, the parameters' gradients) lands in storage of an earlier step's once
  nothing holds that any more (``recycled``), not in memory ``malloc`` may just have handed back to the system, to
  be faulted in again page by page.

``benchmarks/bench_dcls.py`` measures it (``results/dcls_cpu.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from .dcls_native import native_kernel
from .recycled import RECYCLED
from .scratch import SCRATCH, Carve

INTERPOLATIONS = ("gauss", "bilinear")
# Lower bound of the Gaussian's standard deviation, in cells: sigma = |spread| + SIGMA_FLOOR. The value is the
# one the reference DCLS package (v0.1.1) uses, so weights, positions and spreads interchange with it.
SIGMA_FLOOR = 0.27
# exp(-u^2 / 2) = exp2(-HALF_LOG2_E * u^2); torch's exp2 is about twice as fast as exp on CPU
HALF_LOG2_E = 0.5 * math.log2(math.e)
# Filters per block of the kernel's working layout (KernelShape.block): the largest divisor of the filter count up
# to FILTER_BLOCK, or all filters when that is under MIN_FILTER_BLOCK (a count with no divisor in range). Chosen
# with benchmarks/dcls_alternatives.py on the 4096 filters of a dense 64->64 layer (its "blocked" variants).
FILTER_BLOCK = 128
MIN_FILTER_BLOCK = 32


@dataclass(frozen=True)
class KernelShape:
    """Static sizes of a DCLS kernel (plain ints, so the construction traces with torch.fx)."""

    out_channels: int
    in_per_group: int
    kernel_count: int
    height: int
    width: int

    @property
    def filters(self) -> int:
        return self.out_channels * self.in_per_group

    @property
    def block(self) -> int:
        """Filters per block of the kernel's working layout ``(blocks, H, W, block)``."""
        filters = self.filters
        if filters <= FILTER_BLOCK:
            return filters
        largest = max(size for size in range(1, FILTER_BLOCK + 1) if filters % size == 0)
        return largest if largest >= MIN_FILTER_BLOCK else filters

    @property
    def blocks(self) -> int:
        return self.filters // self.block


def window_origin(size: int) -> int:
    """The window cell that position 0 denotes: the centre cell (the lower of the two for an even size)."""
    return size // 2


@dataclass(frozen=True)
class AxisGroup:
    """Axes (rows 0, columns 1) of one window size, computed together: both when the window is square."""

    axes: slice  # into the leading axis of a (2, ...) tensor
    size: int

    @property
    def count(self) -> int:
        return self.axes.stop - self.axes.start

    @property
    def lowest(self) -> int:
        """The first cell's offset from the origin; the last cell's is ``lowest + size - 1``."""
        return -window_origin(self.size)


def axis_groups(shape: KernelShape) -> tuple[AxisGroup, ...]:
    if shape.height == shape.width:
        return (AxisGroup(slice(0, 2), shape.height),)
    return (AxisGroup(slice(0, 1), shape.height), AxisGroup(slice(1, 2), shape.width))


def taps_major(values: torch.Tensor, shape: KernelShape) -> torch.Tensor:
    """(..., O, I/g, K) parameters as a (..., K, N) view (strided: ops read it in place of a copy)."""
    return values.reshape(values.shape[:-3] + (shape.filters, shape.kernel_count)).transpose(-1, -2)


def filters_major(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (..., K, N) gradient -> the parameter's shape (..., O, I/g, K), a new tensor on recycled storage."""
    transposed = grad.transpose(-1, -2)
    result = RECYCLED.empty(grad, *like.shape)
    result.view(transposed.shape).copy_(transposed)
    return result


def blocked(values: torch.Tensor, blocks: int) -> torch.Tensor:
    """A (K, S, N) tensor as a (K, blocks, S, N / blocks) view, each block's filters innermost."""
    count, size, filters = values.shape
    return values.view(count, size, blocks, filters // blocks).transpose(1, 2)


def cell_offsets(grid: torch.Tensor, group: AxisGroup) -> torch.Tensor:
    """The group's cells as offsets from the window origin, (1, 1, S, 1) to broadcast against (A, K, S, N)."""
    return (grid[: group.size] + group.lowest).view(1, 1, -1, 1)


# -- 1-D profiles of a group of axes: centres (A, K, N) -> (A, K, S, N), and back for the gradient ---------------
# Per-tap inputs come unsqueezed to (A, K, 1, N) and cells as (1, 1, S, 1), so they broadcast over the profiles.


def scaled_offsets(shifts, rates, cells, out: torch.Tensor) -> torch.Tensor:
    """``u = (centre - cell) * rate`` into ``out`` (A, K, S, N), from ``shifts = centre * rate`` and the rates."""
    return torch.addcmul(shifts, cells, rates, value=-1, out=out)


def gauss_profile(shifts, rates, cells, zero: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Unnormalized Gaussians ``exp(-u^2 / 2)``, ``u = (centre - cell) * rate``, ``rate = 1 / sigma``, into ``out``
    in three passes (``zero`` a 0-dim zero)."""
    scaled = scaled_offsets(shifts, rates, cells, out)
    return torch.addcmul(zero, scaled, scaled, value=-HALF_LOG2_E, out=out).exp2_()


def gauss_profile_adjoint(grad, profile, shifts, rates, cells) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (A, K, N) of the centres and of ``sigma`` from the gradient (A, K, S, N) of the profiles. ``grad``
    is used up, ``profile`` overwritten.

    With ``f = exp(-u^2 / 2)``, ``u = (c - cell) / sigma``: ``df/du = -u f``, ``du/dc = 1 / sigma`` and
    ``du/dsigma = -u / sigma``, so ``df/dc = -u f rate`` and ``df/dsigma = u^2 f rate``.
    """
    along = grad.mul_(profile)
    scaled = scaled_offsets(shifts, rates, cells, out=profile)
    along.mul_(scaled)  # df f u
    rates = rates.squeeze(2)
    centre_grad = along.sum(dim=2).mul_(rates).neg_()
    sigma_grad = along.mul_(scaled).sum(dim=2).mul_(rates)  # df f u^2 rate
    return centre_grad, sigma_grad


def bilinear_profile(centres, cells, one: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Hat profiles ``max(0, 1 - |centre - cell|)`` into ``out`` (A, K, S, N) (``one`` a 0-dim one)."""
    distance = torch.sub(centres, cells, out=out).abs_()
    return torch.sub(one, distance, out=out).clamp_(min=0)


def bilinear_profile_adjoint(grad: torch.Tensor, centres: torch.Tensor, group: AxisGroup) -> torch.Tensor:
    """Gradient (A, K, N) of the centres (A, K, 1, N) from that of the profiles (A, K, S, N): from above,
    ``grad[floor(c) + 1] - grad[floor(c)]``, the first term absent when ``floor(c)`` is the last cell (a tap there
    has ``t = 0``)."""
    size = group.size
    lower = centres.floor().long().sub_(group.lowest)  # cell index (A, K, 1, N)
    upper = (lower + 1).clamp_(max=size - 1)
    above = grad.gather(2, upper).squeeze(2).mul_(lower.squeeze(2) + 1 < size)
    return above.sub_(grad.gather(2, lower).squeeze(2))


def contract_taps_adjoint(grad: torch.Tensor, work: Workspace, along_rows, along_cols, product) -> None:
    """Per tap, the kernel's gradient (H, W, N) contracted with one profile: ``sum_w grad * cols[k]`` into
    ``along_rows`` (K, H, N) and ``sum_h grad * rows[k]`` into ``along_cols`` (K, W, N), through ``product``.
    Unblocked: sums over the blocked layout write strided rows, and run slower than the transpose saves."""
    taps = zip(work.row_taps, work.col_taps, along_rows.unbind(0), along_cols.unbind(0))
    for row, col, along_row, along_col in taps:
        torch.sum(torch.mul(grad, col, out=product), dim=1, out=along_row)
        torch.sum(torch.mul(grad, row, out=product), dim=0, out=along_col)


# -- the construction's working memory and its steps -------------------------------------------------------------


def per_axis(values: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows' and columns' (K, ...) slices of per-group (A, K, ...) tensors."""
    return (values[0][0], values[0][1]) if len(values) == 1 else (values[0][0], values[1][0])


class Workspace:
    """The views of scratch memory that a construction of one shape works in, made once and reused
    (``Carve.plan``), and the steps that fill them, in order: ``read_taps``, ``compute_profiles``,
    ``compute_scale``, ``contract``.

    Per-tap values are (2, K, N): ``centres`` (offsets clamped to the window), ``rates`` (``1 / sigma``, gauss only)
    and ``shifts`` (``centre * rate``). The profiles of each group of axes are (A, K, S, N); ``rows`` (K, H, N) and
    ``cols`` (K, W, N) are views of them. ``scale`` (K, N) is what multiplies each tap's outer product, ``kernel``
    (blocks, H, W, B) their sum, in blocks of B filters (``KernelShape.block``).
    """

    def __init__(self, shape: KernelShape, gauss: bool, grid: torch.Tensor, memory: Carve) -> None:
        count, filters, height, width = shape.kernel_count, shape.filters, shape.height, shape.width
        blocks, block = shape.blocks, shape.block
        self.shape, self.gauss, self.groups = shape, gauss, axis_groups(shape)
        self.centres = memory.take(2, count, filters)
        self.rates = memory.take(2, count, filters) if gauss else None
        self.shifts = memory.take(2, count, filters) if gauss else None
        self.profiles = tuple(memory.take(g.count, count, g.size, filters) for g in self.groups)
        self.sums = tuple(memory.take(g.count, count, filters) for g in self.groups) if gauss else None
        self.norms = memory.take(count, filters) if gauss else None
        self.scale = memory.take(count, filters)
        self.kernel = memory.take(blocks, height, width, block)
        # views and constants the steps use, per group of axes where they are split
        self.group_centres = tuple(self.centres[g.axes] for g in self.groups)
        self.broadcast = tuple(
            tuple(values[g.axes].unsqueeze(2) if values is not None else None for g in self.groups)
            for values in (self.centres, self.rates, self.shifts)
        )  # centres, rates, shifts per group, each (A, K, 1, N)
        self.cells = tuple(cell_offsets(grid, g) for g in self.groups)
        self.zero, self.one = grid.new_zeros(()), grid.new_ones(())
        self.rows, self.cols = per_axis(self.profiles)
        self.scale_rows = self.scale.unsqueeze(1)  # (K, 1, N)
        self.row_taps = self.rows.unsqueeze(2).unbind(0)  # K x (H, 1, N), for the backward
        self.col_taps = self.cols.unsqueeze(1).unbind(0)  # K x (1, W, N)
        self.row_blocks = blocked(self.rows, blocks).unsqueeze(3).unbind(0)  # K x (blocks, H, 1, B)
        self.col_blocks = blocked(self.cols, blocks).unsqueeze(2).unbind(0)  # K x (blocks, 1, W, B)
        # (blocks, B, H * W), strided: a view of the conv's (N, H * W) layout, block by block
        self.kernel_conv_layout = self.kernel.view(blocks, height * width, block).transpose(1, 2)

    @staticmethod
    def lend(shape: KernelShape, gauss: bool, grid: torch.Tensor, memory: Carve) -> Workspace:
        """The workspace for this shape, made once per place in the scratch buffer (``grid`` holds the cells
        ``0, 1, ...`` whatever tensor it is, so it is not part of the key)."""
        key = ("dcls", shape, gauss, grid.dtype)
        return memory.plan(key, lambda carve: Workspace(shape, gauss, grid, carve))

    def read_taps(self, positions: torch.Tensor, spreads: torch.Tensor | None) -> torch.Tensor:
        """Centres (and rates) from the parameters; returns the unclamped offsets (2, K, N), a view."""
        offsets = taps_major(positions, self.shape)
        for group, centres in zip(self.groups, self.group_centres):
            lowest = group.lowest
            torch.clamp(offsets[group.axes], lowest, lowest + group.size - 1, out=centres)
        if self.gauss:
            torch.abs(taps_major(spreads, self.shape), out=self.rates).add_(SIGMA_FLOOR).reciprocal_()
        return offsets

    def compute_profiles(self) -> None:
        centres, rates, shifts = self.broadcast
        if not self.gauss:
            for index, profile in enumerate(self.profiles):
                bilinear_profile(centres[index], self.cells[index], self.one, out=profile)
            return
        torch.mul(self.centres, self.rates, out=self.shifts)
        for index, profile in enumerate(self.profiles):
            gauss_profile(shifts[index], rates[index], self.cells[index], self.zero, out=profile)
            torch.sum(profile, dim=2, out=self.sums[index])

    def compute_scale(self, weight: torch.Tensor) -> torch.Tensor:
        """Each tap's weight, for gauss over its two profiles' sums (each 2-D Gaussian normalized to sum 1)."""
        weights = taps_major(weight, self.shape)  # a strided view: read once, into the contiguous scale
        if not self.gauss:
            return self.scale.copy_(weights)
        torch.mul(*per_axis(self.sums), out=self.norms)
        return torch.div(weights, self.norms, out=self.scale)

    def contract(self) -> torch.Tensor:
        """``sum_k scale[k] * outer(rows[k], cols[k])`` per filter into ``kernel`` (blocks, H, W, B); ``rows``
        are scaled in place. One multiply-add per tap into the running sum, which stays in cache."""
        self.rows.mul_(self.scale_rows)
        kernel = torch.mul(self.row_blocks[0], self.col_blocks[0], out=self.kernel)
        for row, col in zip(self.row_blocks[1:], self.col_blocks[1:]):
            kernel.addcmul_(row, col)
        return kernel


def _scratch_elements(shape: KernelShape) -> int:
    """Scratch the backward carves (the forward takes less): per-tap values (10 K N: centres, rates and shifts per
    axis, sums per axis, their product, the scale), the profiles and their gradients (2 K (H + W) N) and three
    kernel-sized slabs (the kernel, its gradient, a product)."""
    count, height, width = shape.kernel_count, shape.height, shape.width
    return shape.filters * (count * (2 * height + 2 * width + 10) + 3 * height * width)


class SeparableTapKernel(torch.autograd.Function):
    """The dense kernel (O, I/groups, H, W) from the operator's parameters; arguments as ``build_kernel``
    (``spreads`` None for bilinear). The backward recomputes the profiles from the parameters. The large temporaries
    live in ``SCRATCH``; what either pass returns is a new tensor, on storage from ``RECYCLED``."""

    @staticmethod
    def forward(ctx, weight, positions, spreads, grid, shape: KernelShape):  # type: ignore[override]
        ctx.shape = shape
        ctx.save_for_backward(weight, positions, spreads, grid)
        # no_grad: eager runs a forward without autograd anyway; torch.export traces it inline, where the in-place
        # and out= steps on tensors that require grad would be refused
        with torch.no_grad():
            dense = native_kernel(weight, positions, spreads, shape)  # in C where it applies
            if dense is None:
                dense = torch_kernel(weight, positions, spreads, grid, shape)
        return dense.view(shape.out_channels, shape.in_per_group, shape.height, shape.width)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        weight, positions, spreads, grid = ctx.saved_tensors
        shape: KernelShape = ctx.shape
        with SCRATCH.borrow(weight, _scratch_elements(shape)) as memory:
            grads = kernel_adjoint(grad, weight, positions, spreads, grid, shape, memory)
        return (*grads, None, None)


def torch_kernel(weight, positions, spreads, grid, shape: KernelShape) -> torch.Tensor:
    """The kernel as (N, H * W) with torch ops, a new tensor on recycled storage (``SeparableTapKernel``'s
    arguments)."""
    with SCRATCH.borrow(weight, _scratch_elements(shape)) as memory:
        work = Workspace.lend(shape, spreads is not None, grid, memory)
        work.read_taps(positions, spreads)
        work.compute_profiles()
        work.compute_scale(weight)
        work.contract()
        # (N, H * W) is the conv's weight layout, reached by transposing each block's (H * W, B) tile
        dense = RECYCLED.empty(weight, shape.filters, shape.height * shape.width)
        dense.view(work.kernel_conv_layout.shape).copy_(work.kernel_conv_layout)
    return dense


def kernel_adjoint(grad, weight, positions, spreads, grid, shape: KernelShape, memory: Carve):
    """Gradients of weight, positions and spreads (None for bilinear) from the kernel's gradient."""
    height, width, filters = shape.height, shape.width, shape.filters
    work = Workspace.lend(shape, spreads is not None, grid, memory)
    offsets = work.read_taps(positions, spreads)
    work.compute_profiles()
    scale = work.compute_scale(weight)
    grad = memory.take(height, width, filters).copy_(
        grad.reshape(filters, height * width).t().view(height, width, filters)
    )
    # the gradients of the profiles, in tensors shaped as the profiles
    along = tuple(memory.take(*profile.shape) for profile in work.profiles)
    along_rows, along_cols = per_axis(along)
    contract_taps_adjoint(grad, work, along_rows, along_cols, memory.take(height, width, filters))
    grad_scale = torch.mul(along_rows, work.rows).sum(dim=1)  # (K, N)
    if work.gauss:
        # scale = weights / (Zr Zc), Z the profiles' sums: d/dZr = -grad_scale * scale / Zr, for every row cell
        grad_weights = torch.div(grad_scale, work.norms)
        moved = grad_scale.mul_(scale)
    else:
        grad_weights = grad_scale
    centres, rates, shifts = work.broadcast
    centre_grads, sigma_grads = [], []
    for index, group in enumerate(work.groups):
        along[index].mul_(work.scale_rows)  # the kernel's gradient per profile cell, directly
        if not work.gauss:
            centre_grads.append(bilinear_profile_adjoint(along[index], centres[index], group))
            continue
        along[index].sub_(torch.div(moved, work.sums[index]).unsqueeze(2))  # and through the sums
        centre_grad, sigma_grad = gauss_profile_adjoint(
            along[index], work.profiles[index], shifts[index], rates[index], work.cells[index]
        )
        centre_grads.append(centre_grad)
        sigma_grads.append(sigma_grad)
    inside = torch.eq(work.centres, offsets)  # offsets the clamp left as they were pass the gradient
    grad_centres = torch.cat(centre_grads).mul_(inside)
    grad_spreads = None
    if sigma_grads:  # sigma = |spread| + floor
        signs = taps_major(spreads, shape).sign()
        grad_spreads = filters_major(torch.cat(sigma_grads).mul_(signs), spreads)
    return filters_major(grad_weights, weight), filters_major(grad_centres, positions), grad_spreads


def build_kernel(
    weight: torch.Tensor,
    positions: torch.Tensor,
    spreads: torch.Tensor | None,
    grid: torch.Tensor,
    interpolation: str,
    shape: KernelShape,
) -> torch.Tensor:
    """The dense DCLS kernel (O, I/groups, H, W).

    ``weight``: (O, I/groups, K) tap weights; ``positions``: (2, O, I/groups, K) row and column offsets from
    the window origin (``window_origin``); ``spreads``: (2, O, I/groups, K) raw Gaussian spreads per axis
    (gauss only); ``grid``: (max(H, W),) cell coordinates ``0, 1, ...``; ``shape``: the sizes as ints.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "gauss" and spreads is None:
        raise ValueError("gauss interpolation needs spreads")
    return SeparableTapKernel.apply(
        weight, positions, spreads if interpolation == "gauss" else None, grid, shape
    )
