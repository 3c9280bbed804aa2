"""Dense kernels of DCLS: taps at real-valued positions, spread onto a window by interpolation.

Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution with Learnable Spacings", ICLR 2023 (bilinear),
and "Dilated Convolution with Learnable Spacings: beyond bilinear interpolation", ICML 2023 workshop (Gaussian).

One filter (an output channel and one input channel of its group) holds ``K`` taps; tap ``k`` has a weight
``w_k`` and a position ``(y_k, x_k)`` in cells of an ``H x W`` window, clamped to ``[0, H-1] x [0, W-1]``. The
interpolation is separable, so the filter's dense kernel is a sum of outer products of 1-D factors::

    kernel[h, w] = sum_k  w_k * a_k(h) * b_k(w)

- bilinear: ``a_k(h) = max(0, 1 - |h - y_k|)``, i.e. ``1 - t`` at ``floor(y_k)`` and ``t`` at ``floor(y_k) + 1``
  (``t`` the fractional part): a tap feeds its 4 neighbouring cells with ``w_k (1 - |dy|)(1 - |dx|)``.
- gauss: ``a_k(h) = exp(-(h - y_k)^2 / (2 sigma_k^2))`` normalized to sum 1 over the window (so the 2-D
  Gaussian, their outer product, sums to 1 and ``w_k`` is the tap's total mass), with
  ``sigma_k = |s_k| + SIGMA_FLOOR`` from a learnable spread ``s_k`` per axis.

Speed (the construction runs every training step):
- gauss: the 1-D factors are ``(2, K, S, N)`` tensors with the ``N = out * in/groups`` filters innermost, so
  each step is one long vectorized elementwise op (no batch of tiny matmuls, which is several times slower on
  CPU); the contraction over taps accumulates tap by tap on large layers and is a broadcast product summed
  over taps (in chunks of bounded memory) on small ones.
- bilinear: each tap touches 4 cells, so its 4 products are scatter-added straight into the ``(N, H*W)`` kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

INTERPOLATIONS = ("gauss", "bilinear")
# Lower bound of the Gaussian's standard deviation, in cells: sigma = |spread| + SIGMA_FLOOR. The value is the
# one the reference DCLS package (v0.1.1) uses, so weights, positions and spreads interchange with it.
SIGMA_FLOOR = 0.27
# Largest (taps, H, W, N) temporary of the tap contraction, in elements (16 MiB in float32).
CHUNK_ELEMENTS = 1 << 22
# One tap's (H, W, N) slab from which the tap contraction accumulates tap by tap (see sum_outer_products).
LOOP_SLAB_ELEMENTS = 1 << 16
LOG2_E = math.log2(math.e)  # exp(x) = exp2(x * log2(e)); torch's exp2 is about twice as fast as exp on CPU


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


def tap_centres(positions: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """Row and column offsets from the window origin (2, ...) -> window cells, clamped to the window."""
    height, width = window
    if height == width:
        return (positions + window_origin(height)).clamp(0, height - 1)
    rows = (positions[0] + window_origin(height)).clamp(0, height - 1)
    cols = (positions[1] + window_origin(width)).clamp(0, width - 1)
    return torch.stack((rows, cols))


def gauss_factors(centres: torch.Tensor, spreads: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Unnormalized Gaussian factors ``exp(-(cell - centre)^2 / (2 sigma^2))``, ``sigma = |spread| + 0.27``.

    ``centres``, ``spreads``: (2, K, N) for rows and columns; ``grid``: (S,) cell coordinates. Returns
    (2, K, S, N), computed as ``2^(-u^2)`` with ``u = (cell - centre) * sqrt(log2(e) / 2) / sigma``: three
    passes over the (2, K, S, N) tensor.
    """
    rate = (math.sqrt(0.5 * LOG2_E) / (spreads.abs() + SIGMA_FLOOR)).unsqueeze(2)  # (2, K, 1, N)
    scaled = torch.addcmul(-centres.unsqueeze(2) * rate, grid.view(1, 1, -1, 1), rate)  # (2, K, S, N)
    return torch.exp2(torch.addcmul(scaled.new_zeros(()), scaled, scaled, value=-1))  # (2, K, S, N)


def sum_outer_products(
    weights: torch.Tensor,
    factors_h: torch.Tensor,
    factors_w: torch.Tensor,
    kernel_count: int,
    chunk: int,
    by_tap: bool = False,
) -> torch.Tensor:
    """``sum_k weights[k] * outer(factors_h[k], factors_w[k])`` per filter.

    ``weights``: (K, N); ``factors_h``: (K, H, N); ``factors_w``: (K, W, N). Returns (H, W, N). Two ways, chosen
    by the caller from the size of one tap's (H, W, N) slab (``by_tap`` when it is at least ``LOOP_SLAB_ELEMENTS``):
    - large slabs (dense layers: many filters): one multiply-add per tap into the running sum, which stays in
      cache (the broadcast product would write and read a (K, H, W, N) temporary): about 2x faster forward and
      20% faster forward + backward on a 64->64 7x7 layer with 9 taps;
    - small slabs (depthwise layers): ``chunk`` taps per broadcast product summed over taps: few, long ops, where
      a loop of short multiply-adds would be dominated by per-op overhead (2x slower with 34 taps).
    """
    weighted_h = factors_h * weights.unsqueeze(1)  # (K, H, N)
    if by_tap:
        kernel = weighted_h[0].unsqueeze(1) * factors_w[0].unsqueeze(0)  # (H, W, N)
        for k in range(1, kernel_count):
            kernel = torch.addcmul(kernel, weighted_h[k].unsqueeze(1), factors_w[k].unsqueeze(0))
        return kernel
    kernel = None
    for start in range(0, kernel_count, chunk):
        stop = min(start + chunk, kernel_count)
        part = (weighted_h[start:stop].unsqueeze(2) * factors_w[start:stop].unsqueeze(1)).sum(
            dim=0
        )  # (H, W, N)
        kernel = part if kernel is None else kernel + part
    return kernel


def gauss_kernel(
    weight: torch.Tensor,
    positions: torch.Tensor,
    spreads: torch.Tensor,
    grid: torch.Tensor,
    shape: KernelShape,
) -> torch.Tensor:
    """The gauss DCLS kernel (O, I/groups, H, W); arguments as ``build_kernel``."""
    filters, count, height, width = shape.filters, shape.kernel_count, shape.height, shape.width
    weights = weight.reshape(filters, count).t().contiguous()  # (K, N)
    centres = tap_centres(positions.reshape(2, filters, count).transpose(1, 2), (height, width)).contiguous()
    sigmas = spreads.reshape(2, filters, count).transpose(1, 2).contiguous()  # (2, K, N)
    factors = gauss_factors(centres, sigmas, grid)  # (2, K, S, N)
    factors_h, factors_w = factors[0, :, :height], factors[1, :, :width]  # (K, H, N), (K, W, N)
    if height == width:
        sums = factors.sum(dim=2)  # (2, K, N)
        sums_h, sums_w = sums[0], sums[1]
    else:
        sums_h, sums_w = factors_h.sum(dim=1), factors_w.sum(dim=1)  # (K, N)
    weights = weights / (sums_h * sums_w)  # each tap's 2-D Gaussian normalized to sum 1 over the window
    chunk = max(1, CHUNK_ELEMENTS // (height * width * filters))
    by_tap = height * width * filters >= LOOP_SLAB_ELEMENTS
    kernel = sum_outer_products(weights, factors_h, factors_w, count, chunk, by_tap)  # (H, W, N)
    # (O, I/g, H, W), contiguous like nn.Conv2d's weight so the conv picks the same algorithm
    return kernel.permute(2, 0, 1).reshape(shape.out_channels, shape.in_per_group, height, width).contiguous()


def bilinear_kernel(weight: torch.Tensor, positions: torch.Tensor, shape: KernelShape) -> torch.Tensor:
    """The bilinear DCLS kernel (O, I/groups, H, W); arguments as ``build_kernel``.

    Written with ``floor`` (not ``max(0, 1 - |cell - c|)``, whose derivative vanishes on integers) so that a
    tap on an integer cell, where every tap seeded from a conv starts, gets the one-sided derivative with
    respect to its position, as a tap between cells does.
    """
    filters, count, height, width = shape.filters, shape.kernel_count, shape.height, shape.width
    weights = weight.reshape(filters, count)  # (N, K)
    centres = tap_centres(positions.reshape(2, filters, count), (height, width))  # (2, N, K)
    lower = centres.detach().floor()  # (2, N, K)
    fraction = centres - lower  # (2, N, K), d fraction / d centre = 1
    top, bottom = (1 - fraction[0]) * weights, fraction[0] * weights  # row shares times the weight (N, K)
    left, right = 1 - fraction[1], fraction[1]  # column shares (N, K)
    shares = torch.stack((top * left, top * right, bottom * left, bottom * right), dim=1)  # (N, 4, K)
    row, col = lower[0].long(), lower[1].long()  # (N, K)
    next_row, next_col = row + 1 < height, col + 1 < width  # (N, K) bool: is the second row / column inside?
    cell = row * width + col  # (N, K) flat index of the top-left share
    cells = torch.stack((cell, cell + 1, cell + width, cell + width + 1), dim=1)  # (N, 4, K)
    inside = torch.stack((torch.ones_like(next_col), next_col, next_row, next_row & next_col), dim=1)
    # A share past the last row or column (a tap on it has t = 0 there) is dropped: its value and, through the
    # mask, its gradient are zero, and its index is pointed at the tap's own cell to stay in range.
    shares = shares * inside  # (N, 4, K)
    cells = torch.where(inside, cells, cell.unsqueeze(1))  # (N, 4, K)
    flat = shares.new_zeros(filters, height * width)  # (N, H*W)
    flat.scatter_add_(1, cells.reshape(filters, 4 * count), shares.reshape(filters, 4 * count))
    return flat.reshape(shape.out_channels, shape.in_per_group, height, width)


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
    if interpolation == "gauss":
        if spreads is None:
            raise ValueError("gauss interpolation needs spreads")
        return gauss_kernel(weight, positions, spreads, grid, shape)
    if interpolation == "bilinear":
        return bilinear_kernel(weight, positions, shape)
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
