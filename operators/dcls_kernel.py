"""Dense kernels of DCLS: taps at real-valued positions, spread onto a window by interpolation.

Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution with Learnable Spacings", ICLR 2023 (bilinear),
and "Dilated Convolution with Learnable Spacings: beyond bilinear interpolation", ICML 2023 workshop (Gaussian).

A filter (an output channel and one input channel of its group) holds ``K`` taps: weights ``w_k`` at positions
``(y_k, x_k)``, offsets in cells from the window origin, clamped to the ``H x W`` window. The interpolation is
separable, so the kernel is one contraction over the taps of 1-D profiles: ``kernel[h, w] = sum_k w_k a_k(h)
b_k(w)``. Bilinear: ``a_k`` is ``1 - t`` at ``floor(y_k)`` and ``t`` at the next cell (``t`` the fractional part),
differentiated from above, so taps seeded on integer cells are not stuck. Gauss: ``a_k(h) = exp(-(h - y_k)^2 /
(2 sigma_k^2))`` normalized to sum 1 over the window (``w_k`` is the tap's mass), ``sigma_k = |s_k| +
SIGMA_FLOOR`` from a learnable spread ``s_k`` per axis.

A few large torch ops over all filters and taps at once (no loop over either), autograd for the backward: both
axes' profiles in one ``(2, S, N, K)`` tensor when the window is square (cells outermost, so every step runs
along the ``N x K`` taps as the parameters hold them, not along a few cells), the taps' scale, and one batched
matrix product into the conv's ``(N, H, W)`` layout. ``torch.compile`` fuses the elementwise steps where a model
is compiled. ``benchmarks/bench_dcls.py`` measures it.
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
    """The least value of a Gaussian profile: under what ``dtype`` resolves beside the peak (``eps^2``) and far
    enough above its subnormal numbers (``tiny^(1/4)``) that a product of two profiles, a weight and a gradient
    stays a normal number. Subnormal numbers slow CPU arithmetic several times over; unfloored, a narrow tap's
    float32 profile reaches them 3.6 cells away (``u = 13``) and a product of two profiles 2.5 cells away."""
    info = torch.finfo(dtype)
    return min(info.eps**2, info.tiny**0.25)


def gauss_profiles(centres: torch.Tensor, spreads: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Unnormalized Gaussians (A, S, N, K) around ``centres`` (A, N, K) with ``sigma = |spreads| + floor``, at
    ``cells`` (S,) (offsets from the window origin, as the centres), never under ``gauss_floor``."""
    sigma = (spreads.abs() + SIGMA_FLOOR).unsqueeze(1)  # (A, 1, N, K)
    scaled = (cells.view(1, -1, 1, 1) - centres.unsqueeze(1)) / sigma  # u, (A, S, N, K)
    # exp(-u^2 / 2) = 2^(-u^2 log2(e) / 2), in two passes; exp2 is the faster on the CPU
    exponent = torch.addcmul(scaled.new_zeros(()), scaled, scaled, value=-0.5 * math.log2(math.e))
    return exponent.clamp(min=math.log2(gauss_floor(scaled.dtype))).exp2()


def bilinear_profiles(centres: torch.Tensor, lowest: int, size: int) -> torch.Tensor:
    """Hats (A, S, N, K) around ``centres`` (A, N, K): ``1 - t`` at cell ``floor(c)``, ``t`` at the next one. A
    tap on the last cell (``t = 0``) puts its ``t`` past the window, in a slot that is cut off."""
    lower = centres.detach().floor()
    fraction = (centres - lower).unsqueeze(1)  # t, (A, 1, N, K)
    index = (lower - lowest).long().unsqueeze(1)  # floor(c) as a cell index
    shares = torch.cat((1 - fraction, fraction), dim=1)  # (A, 2, N, K)
    slots = centres.new_zeros(centres.shape[0], size + 1, *centres.shape[1:])
    return slots.scatter_(1, torch.cat((index, index + 1), dim=1), shares)[:, :size]


def build_kernel(
    weight: torch.Tensor,
    positions: torch.Tensor,
    spreads: torch.Tensor | None,
    grid: torch.Tensor,
    interpolation: str,
    shape: KernelShape,
) -> torch.Tensor:
    """The dense kernel (O, I/groups, H, W) from tap weights (O, I/groups, K), positions (2, O, I/groups, K: rows,
    columns), raw spreads (2, O, I/groups, K; gauss only), ``grid`` (max(H, W),) the cells ``0, 1, ...``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "gauss" and spreads is None:
        raise ValueError("gauss interpolation needs spreads")
    filters, count, height, width = shape.filters, shape.kernel_count, shape.height, shape.width
    offsets = positions.reshape(2, filters, count)  # (2, N, K), rows then columns
    spreads = spreads.reshape(2, filters, count) if interpolation == "gauss" else None
    # both axes in one pass when the window is square, else one pass per axis
    axes = [(slice(0, 2), height)] if height == width else [(slice(0, 1), height), (slice(1, 2), width)]
    groups = []  # profiles (A, S, N, K) per pass
    for axis, size in axes:
        lowest = -window_origin(size)
        centres = offsets[axis].clamp(lowest, lowest + size - 1)  # (A, N, K)
        if spreads is None:
            groups.append(bilinear_profiles(centres, lowest, size))
        else:
            groups.append(gauss_profiles(centres, spreads[axis], grid[:size] + lowest))
    rows, cols = (profile for group in groups for profile in group.unbind(0))  # (H, N, K), (W, N, K)
    scale = weight.reshape(filters, count)  # (N, K)
    if spreads is not None:  # each 1-D Gaussian normalized to sum 1 over the window
        sums = [total for group in groups for total in group.sum(1).unbind(0)]  # (N, K) per axis
        scale = scale / (sums[0] * sums[1])
    # per filter (H, K) @ (K, W), read in place from the profiles' layout
    kernel = torch.bmm((rows * scale).permute(1, 0, 2), cols.permute(1, 2, 0))  # (N, H, W)
    return kernel.view(shape.out_channels, shape.in_per_group, height, width)
