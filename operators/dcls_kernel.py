"""Dense kernels of DCLS: taps at real-valued positions, spread onto a window by interpolation.

Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution with Learnable Spacings", ICLR 2023 (bilinear),
and "Dilated Convolution with Learnable Spacings: beyond bilinear interpolation", ICML 2023 workshop (Gaussian).

One filter (an output channel and one input channel of its group) holds ``K`` taps; tap ``k`` has a weight
``w_k`` and a position ``(y_k, x_k)`` in cells of an ``H x W`` window, clamped to ``[0, H-1] x [0, W-1]``. The
interpolation is separable, so the filter's dense kernel is a sum of outer products of 1-D profiles::

    kernel[h, w] = sum_k  w_k * a_k(h) * b_k(w)

- bilinear: ``a_k(h) = max(0, 1 - |h - y_k|)``, i.e. ``1 - t`` at ``floor(y_k)`` and ``t`` at ``floor(y_k) + 1``
  (``t`` the fractional part): a tap feeds its 4 neighbouring cells with ``w_k (1 - |dy|)(1 - |dx|)``. The
  derivative with respect to ``y_k`` is taken from above (``-1`` at ``floor(y_k)``, ``+1`` at the next cell), also
  on integer positions where every tap seeded from a conv starts, so such taps are not stuck.
- gauss: ``a_k(h) = exp(-(h - y_k)^2 / (2 sigma_k^2))`` normalized to sum 1 over the window (so the 2-D
  Gaussian, their outer product, sums to 1 and ``w_k`` is the tap's total mass), with
  ``sigma_k = |s_k| + SIGMA_FLOOR`` from a learnable spread ``s_k`` per axis.

Speed (the construction runs every training step; at batch 1 it costs a large part of what the conv does): the
whole construction is ``SeparableTapKernel``, an autograd function with a hand-written backward. Its forward
works in place on one ``(K, S, N)`` buffer per axis, with the ``N = out * in/groups`` filters innermost so every
step is one long vectorized op, and accumulates the taps one by one into an ``(H, W, N)`` sum (a broadcast
product over all taps would write and read a ``(K, H, W, N)`` temporary). Those buffers are CPU scratch reused
from call to call (``scratch``), and only the parameters are kept for the backward, which recomputes the
profiles. Built from autograd ops instead, each of some thirty steps makes a new tensor that autograd keeps until
the backward. ``benchmarks/bench_dcls.py`` measures both (``results/dcls_cpu.json`` and, for the autograd version,
``results/dcls_cpu_before.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from .scratch import SCRATCH, Carve

INTERPOLATIONS = ("gauss", "bilinear")
# Lower bound of the Gaussian's standard deviation, in cells: sigma = |spread| + SIGMA_FLOOR. The value is the
# one the reference DCLS package (v0.1.1) uses, so weights, positions and spreads interchange with it.
SIGMA_FLOOR = 0.27
LOG2_E = math.log2(math.e)  # exp(x) = exp2(x * log2(e)); torch's exp2 is about twice as fast as exp on CPU
# exp(-d^2 / (2 sigma^2)) = exp2(-(d * rate)^2) with rate = GAUSS_RATE / sigma
GAUSS_RATE = math.sqrt(0.5 * LOG2_E)


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


def window_origin(size: int) -> int:
    """The window cell that position 0 denotes: the centre cell (the lower of the two for an even size)."""
    return size // 2


# -- per-tap values along one axis: parameters (N, K) -> (K, N), and gradients back ---------------------------------


def taps_major(values: torch.Tensor, filters: int, count: int, out: torch.Tensor) -> torch.Tensor:
    """(..., O, I/g, K) parameters -> ``out`` (..., K, N), the layout every later step reads (a copy: the callers
    work in place on it)."""
    return out.copy_(values.reshape(out.shape[:-2] + (filters, count)).transpose(-1, -2))


def filters_major(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (..., K, N) gradient -> the parameter's shape (..., O, I/g, K)."""
    return grad.transpose(-1, -2).reshape(like.shape)


def centre_cells(positions: torch.Tensor, sizes: tuple[int, int]) -> torch.Tensor:
    """Offsets from the window origin (2, K, N) -> window cells clamped to the window, in place."""
    for axis, size in enumerate(sizes):
        positions[axis].add_(window_origin(size)).clamp_(0, size - 1)
    return positions


def inside_window(positions: torch.Tensor, sizes: tuple[int, int]) -> torch.Tensor:
    """Where the clamp lets the gradient through (2, K, N): offsets whose cell lies in the window, borders included."""
    inside = torch.empty_like(positions, dtype=torch.bool)
    for axis, size in enumerate(sizes):
        cells = positions[axis] + window_origin(size)
        torch.logical_and(cells >= 0, cells <= size - 1, out=inside[axis])
    return inside


def gauss_rates(spreads: torch.Tensor) -> torch.Tensor:
    """``GAUSS_RATE / sigma`` with ``sigma = |spread| + SIGMA_FLOOR``, in place on ``spreads``."""
    return spreads.abs_().add_(SIGMA_FLOOR).reciprocal_().mul_(GAUSS_RATE)


# -- 1-D profiles along one axis: centres (K, N) -> (K, S, N), and back for the gradient ------------------------


def _scaled_offsets(
    centres: torch.Tensor, rates: torch.Tensor | None, grid: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """``(cell - centre) * rate`` (K, S, N), or ``cell - centre`` without rates, in one pass into ``out``."""
    if rates is None:
        return torch.sub(grid.view(1, -1, 1), centres.unsqueeze(1), out=out)
    shift = (centres * rates).neg_().unsqueeze(1)  # (K, 1, N)
    return torch.addcmul(shift, grid.view(1, -1, 1), rates.unsqueeze(1), out=out)


def gauss_profile(
    centres: torch.Tensor, rates: torch.Tensor, grid: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Unnormalized Gaussian profiles ``2^(-((cell - centre) * rate)^2)`` (K, S, N) into ``out``; ``rates`` (K, N)."""
    return _scaled_offsets(centres, rates, grid, out).square_().neg_().exp2_()


def gauss_profile_adjoint(
    grad: torch.Tensor, profile: torch.Tensor, centres: torch.Tensor, rates: torch.Tensor, grid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (centres, rates), each (K, N), from the gradient (K, S, N) of the profiles. ``grad`` is used up,
    ``profile`` overwritten.

    With ``u = (cell - c) r`` and ``f = 2^(-u^2)``: ``df/du = -2 ln2 u f``, ``du/dc = -r``, ``du/dr = u / r``.
    """
    along = grad.mul_(profile)
    scaled = _scaled_offsets(centres, rates, grid, out=profile)  # u
    along.mul_(scaled)  # df * f * u
    first = along.sum(dim=1)  # sum over cells of df f u
    second = along.mul_(scaled).sum(dim=1)  # sum over cells of df f u^2
    two_ln2 = 2 * math.log(2)
    return first.mul_(rates).mul_(two_ln2), second.div_(rates).mul_(-two_ln2)


def bilinear_profile(centres: torch.Tensor, grid: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Hat profiles ``max(0, 1 - |cell - centre|)`` (K, S, N) into ``out``."""
    return _scaled_offsets(centres, None, grid, out).abs_().neg_().add_(1).clamp_(min=0)


def bilinear_profile_adjoint(grad: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Gradient (K, N) of the centres from that of the profiles (K, S, N): from above, ``grad[floor(c) + 1] -
    grad[floor(c)]``, the first term absent when ``floor(c)`` is the last cell (a tap there has ``t = 0``)."""
    size = grad.shape[1]
    lower = centres.floor().long().unsqueeze(1)  # (K, 1, N)
    upper = (lower + 1).clamp_(max=size - 1)
    above = grad.gather(1, upper).squeeze(1).mul_(lower.squeeze(1) + 1 < size)
    return above.sub_(grad.gather(1, lower).squeeze(1))


# -- the contraction over taps: sum_k w_k outer(rows_k, cols_k), and its adjoint ---------------------------------


def contract_taps(
    weights: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """``sum_k weights[k] * outer(rows[k], cols[k])`` per filter: (K, N), (K, H, N), (K, W, N) -> ``out`` (H, W, N).

    ``rows`` is scaled by the weights in place. One multiply-add per tap into the running sum, which stays in cache
    (a broadcast product over all taps would write and read a (K, H, W, N) temporary)."""
    weighted = rows.mul_(weights.unsqueeze(1))
    kernel = torch.mul(weighted[0].unsqueeze(1), cols[0].unsqueeze(0), out=out)
    for k in range(1, weights.shape[0]):
        kernel.addcmul_(weighted[k].unsqueeze(1), cols[k].unsqueeze(0))
    return kernel


def contract_taps_adjoint(
    grad: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, memory: Carve
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per tap, the kernel's gradient (H, W, N) contracted with one profile: ``sum_w grad * cols[k]`` (K, H, N)
    and ``sum_h grad * rows[k]`` (K, W, N), through one reused (H, W, N) buffer."""
    count, height, width, filters = rows.shape[0], rows.shape[1], cols.shape[1], grad.shape[2]
    along_rows, along_cols = memory.take(count, height, filters), memory.take(count, width, filters)
    product = memory.take(height, width, filters)
    for k in range(count):
        torch.sum(torch.mul(grad, cols[k].unsqueeze(0), out=product), dim=1, out=along_rows[k])
        torch.sum(torch.mul(grad, rows[k].unsqueeze(1), out=product), dim=0, out=along_cols[k])
    return along_rows, along_cols


# -- the whole construction as one autograd function -------------------------------------------------------------


@dataclass(frozen=True)
class _Taps:
    """The taps in the (K, N) layout: weights, window-cell centres (2, K, N), gauss rates (2, K, N) or None; for the
    backward also where the clamp lets the gradient through and the spreads' signs (2, K, N)."""

    weights: torch.Tensor
    centres: torch.Tensor
    rates: torch.Tensor | None
    inside: torch.Tensor | None = None
    spread_signs: torch.Tensor | None = None


def _taps(weight, positions, spreads, shape: KernelShape, memory: Carve, backward: bool = False) -> _Taps:
    filters, count, sizes = shape.filters, shape.kernel_count, (shape.height, shape.width)
    offsets = taps_major(positions, filters, count, memory.take(2, count, filters))
    inside = inside_window(offsets, sizes) if backward else None
    centres = centre_cells(offsets, sizes)
    rates = signs = None
    if spreads is not None:
        raw = taps_major(spreads, filters, count, memory.take(2, count, filters))
        signs = raw.sign() if backward else None
        rates = gauss_rates(raw)
    weights = taps_major(weight, filters, count, memory.take(count, filters))
    return _Taps(weights, centres, rates, inside, signs)


def _profiles(taps: _Taps, grid: torch.Tensor, shape: KernelShape, memory: Carve):
    """Row profiles (K, H, N), column profiles (K, W, N) and the weights that scale their outer products (K, N):
    for gauss the tap weights over the profiles' sums (each tap's 2-D Gaussian normalized to sum 1)."""
    grid_rows, grid_cols = grid[: shape.height], grid[: shape.width]
    count, filters = shape.kernel_count, shape.filters
    rows, cols = memory.take(count, shape.height, filters), memory.take(count, shape.width, filters)
    if taps.rates is None:
        bilinear_profile(taps.centres[0], grid_rows, rows)
        bilinear_profile(taps.centres[1], grid_cols, cols)
        return rows, cols, taps.weights
    gauss_profile(taps.centres[0], taps.rates[0], grid_rows, rows)
    gauss_profile(taps.centres[1], taps.rates[1], grid_cols, cols)
    return rows, cols, taps.weights / (rows.sum(dim=1) * cols.sum(dim=1))


def _scratch_elements(shape: KernelShape) -> int:
    """Scratch the backward carves (the forward takes less): the taps' weights, centres and rates (5 K N), the
    profiles and their gradients, one more (K, H, N) product and two (H, W, N) slabs."""
    count, height, width = shape.kernel_count, shape.height, shape.width
    return shape.filters * (count * (3 * height + 2 * width + 5) + 2 * height * width)


class SeparableTapKernel(torch.autograd.Function):
    """The dense kernel (O, I/groups, H, W) from the operator's parameters; arguments as ``build_kernel``
    (``spreads`` None for bilinear). The backward recomputes the profiles from the parameters. The large temporaries
    live in ``SCRATCH``; what either pass returns is a new tensor."""

    @staticmethod
    def forward(ctx, weight, positions, spreads, grid, shape: KernelShape):  # type: ignore[override]
        ctx.shape = shape
        ctx.save_for_backward(weight, positions, spreads, grid)
        height, width, filters = shape.height, shape.width, shape.filters
        # no_grad: eager runs a forward without autograd anyway; torch.export traces it inline, where the in-place
        # and out= steps on tensors that require grad would be refused
        with torch.no_grad(), SCRATCH.borrow(weight, _scratch_elements(shape)) as memory:
            rows, cols, scaled = _profiles(
                _taps(weight, positions, spreads, shape, memory), grid, shape, memory
            )
            kernel = contract_taps(scaled, rows, cols, memory.take(height, width, filters))
            # (N, H * W) is the conv's weight layout; a 2-D transposed copy is 4x faster than permuting (H, W, O, I)
            dense = weight.new_empty(filters, height * width).copy_(kernel.view(height * width, filters).t())
        return dense.view(shape.out_channels, shape.in_per_group, height, width)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        weight, positions, spreads, grid = ctx.saved_tensors
        shape: KernelShape = ctx.shape
        with SCRATCH.borrow(weight, _scratch_elements(shape)) as memory:
            return SeparableTapKernel._backward(grad, weight, positions, spreads, grid, shape, memory)

    @staticmethod
    def _backward(grad, weight, positions, spreads, grid, shape: KernelShape, memory: Carve):
        height, width, filters = shape.height, shape.width, shape.filters
        taps = _taps(weight, positions, spreads, shape, memory, backward=True)
        rows, cols, scaled = _profiles(taps, grid, shape, memory)
        grad = grad.reshape(filters, height * width).t().view(height, width, filters)
        grad = memory.take(height, width, filters).copy_(grad)  # (H, W, N), the profiles' layout
        along_rows, along_cols = contract_taps_adjoint(grad, rows, cols, memory)  # (K, H, N), (K, W, N)
        grad_scaled = torch.mul(along_rows, rows, out=memory.take(*rows.shape)).sum(dim=1)  # (K, N)
        grad_rows = along_rows.mul_(scaled.unsqueeze(1))  # the kernel's gradient per profile cell
        grad_cols = along_cols.mul_(scaled.unsqueeze(1))
        grad_spreads = None
        if taps.rates is None:
            grad_weights = grad_scaled
            grad_centres = torch.stack(
                (bilinear_profile_adjoint(grad_rows, taps.centres[0]),
                 bilinear_profile_adjoint(grad_cols, taps.centres[1]))
            )  # fmt: skip
        else:
            # scaled = weights / (Zr Zc), Z the profiles' sums: d/dZr = -grad_scaled * scaled / Zr
            sums_rows, sums_cols = rows.sum(dim=1), cols.sum(dim=1)  # (K, N)
            moved = grad_scaled * scaled
            grad_rows.sub_((moved / sums_rows).unsqueeze(1))
            grad_cols.sub_((moved / sums_cols).unsqueeze(1))
            rates = taps.rates
            centre_rows, rate_rows = gauss_profile_adjoint(
                grad_rows, rows, taps.centres[0], rates[0], grid[:height]
            )
            centre_cols, rate_cols = gauss_profile_adjoint(
                grad_cols, cols, taps.centres[1], rates[1], grid[:width]
            )
            grad_weights = grad_scaled.div_(sums_rows * sums_cols)
            grad_centres = torch.stack((centre_rows, centre_cols))
            # rate = GAUSS_RATE / (|s| + floor): d rate / d s = -sign(s) rate^2 / GAUSS_RATE
            slope = taps.spread_signs.mul_(rates).mul_(rates).div_(-GAUSS_RATE)
            grad_spreads = filters_major(torch.stack((rate_rows, rate_cols)).mul_(slope), spreads)
        grad_centres.mul_(taps.inside)  # the clamp's gradient
        return (
            filters_major(grad_weights, weight),
            filters_major(grad_centres, positions),
            grad_spreads,
            None,
            None,
        )


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
