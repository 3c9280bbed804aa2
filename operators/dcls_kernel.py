"""Dense kernels of DCLS: taps at real-valued positions, spread onto a window by interpolation.

Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution with Learnable Spacings", ICLR 2023 (bilinear),
and "Dilated Convolution with Learnable Spacings: beyond bilinear interpolation", ICML 2023 workshop (Gaussian).

One filter (an output channel and one input channel of its group) holds ``K`` taps; tap ``k`` has a weight
``w_k`` and a position ``(y_k, x_k)``: offsets in cells from the window origin (``window_origin``), clamped to the
``H x W`` window. The interpolation is separable, so the filter's dense kernel is a sum of outer products of 1-D
profiles, one contraction over the taps::

    kernel[h, w] = sum_k  w_k * a_k(h) * b_k(w)

- bilinear: ``a_k`` is ``1 - t`` at ``floor(y_k)`` and ``t`` at ``floor(y_k) + 1`` (``t`` the fractional part),
  the hat ``max(0, 1 - |h - y_k|)``; its derivative in ``y_k`` is the one from above (``-1`` at ``floor(y_k)``,
  ``+1`` at the next cell), also on integer positions where every tap seeded from a conv starts, so such taps
  are not stuck.
- gauss: ``a_k(h) = exp(-(h - y_k)^2 / (2 sigma_k^2))`` normalized to sum 1 over the window (so the 2-D
  Gaussian, their outer product, sums to 1 and ``w_k`` is the tap's total mass), with
  ``sigma_k = |s_k| + SIGMA_FLOOR`` from a learnable spread ``s_k`` per axis.

The construction is a few large torch ops over all filters at once, whatever their number or the taps': the
profiles of both axes together (one ``(2, N, K, S)`` tensor when the window is square), the taps' scale, and one
batched matrix product into the conv's ``(N, H, W)`` layout; autograd takes the backward. ``torch.compile``
fuses the elementwise steps where a model is compiled. ``benchmarks/bench_dcls.py`` measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

INTERPOLATIONS = ("gauss", "bilinear")
# Lower bound of the Gaussian's standard deviation, in cells: sigma = |spread| + SIGMA_FLOOR. The value is the
# one the reference DCLS package (v0.1.1) uses, so weights, positions and spreads interchange with it.
SIGMA_FLOOR = 0.27


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


def gauss_floor(dtype: torch.dtype) -> float:
    """The least value of a Gaussian profile: below what ``dtype`` resolves beside the peak (``eps^2``) and far
    enough above its subnormal numbers (``tiny^(1/4)``) that a product of two profiles, a weight and a gradient
    stays a normal number. Subnormal operands cost a CPU some hundred times a normal multiply; the profiles of a
    tap far from a cell reach them (``exp(-u^2 / 2)`` falls under float32's ``tiny`` at ``u = 13``, 3.5 cells at
    ``sigma = 0.27``), and so would, from 6.6 (1.8 cells), their products in the kernel."""
    info = torch.finfo(dtype)
    return min(info.eps**2, info.tiny**0.25)


def gauss_profiles(centres: torch.Tensor, spreads: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Unnormalized Gaussians (A, N, K, S) around ``centres`` (A, N, K) with ``sigma = |spreads| + floor``, at
    ``cells`` (S,) (offsets from the window origin, as the centres), never under ``gauss_floor``."""
    scaled = (cells - centres.unsqueeze(-1)) / (spreads.abs() + SIGMA_FLOOR).unsqueeze(-1)  # u, (A, N, K, S)
    exponent = torch.addcmul(scaled.new_zeros(()), scaled, scaled, value=-0.5)  # -u^2 / 2 in one pass
    return exponent.clamp(min=math.log(gauss_floor(scaled.dtype))).exp()


def bilinear_profiles(centres: torch.Tensor, lowest: int, size: int) -> torch.Tensor:
    """Hats (A, N, K, S) around ``centres`` (A, N, K): ``1 - t`` at cell ``floor(c)``, ``t`` at the next one. A
    tap on the last cell (``t = 0``) puts its ``t`` past the window, in a slot that is cut off."""
    lower = centres.detach().floor()
    fraction = (centres - lower).unsqueeze(-1)  # t, (A, N, K, 1)
    index = (lower - lowest).long().unsqueeze(-1)  # floor(c) as a cell index
    shares = torch.cat((1 - fraction, fraction), dim=-1)  # (A, N, K, 2)
    slots = centres.new_zeros(*centres.shape, size + 1)
    return slots.scatter(-1, torch.cat((index, index + 1), dim=-1), shares)[..., :size]


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
    filters, count, height, width = shape.filters, shape.kernel_count, shape.height, shape.width
    offsets = positions.reshape(2, filters, count)  # (2, N, K), rows then columns
    spreads = spreads.reshape(2, filters, count) if interpolation == "gauss" else None
    # both axes in one pass when the window is square, else one pass per axis
    axes = [(slice(0, 2), height)] if height == width else [(slice(0, 1), height), (slice(1, 2), width)]
    groups = []  # profiles (A, N, K, S) per pass
    for axis, size in axes:
        lowest = -window_origin(size)
        centres = offsets[axis].clamp(lowest, lowest + size - 1)  # (A, N, K)
        if spreads is None:
            groups.append(bilinear_profiles(centres, lowest, size))
        else:
            groups.append(gauss_profiles(centres, spreads[axis], grid[:size] + lowest))
    rows, cols = (profile for group in groups for profile in group.unbind(0))  # (N, K, H), (N, K, W)
    scale = weight.reshape(filters, count)  # (N, K)
    if spreads is not None:  # each 1-D Gaussian normalized to sum 1 over the window
        sums = [total for group in groups for total in group.sum(-1).unbind(0)]  # (N, K) per axis
        scale = scale / (sums[0] * sums[1])
    kernel = torch.bmm((rows * scale.unsqueeze(-1)).transpose(1, 2), cols)  # (N, H, W)
    return kernel.view(shape.out_channels, shape.in_per_group, height, width)
