"""The block convolution orthogonal parameterization (BCOP) of an orthogonal kernel.

Li et al. (2019), "Preventing Gradient Attenuation in Lipschitz Constrained Convolutional Networks", sec. 4: an
orthogonal ``c x c`` matrix ``H`` (a 1x1 orthogonal conv) convolved with 2-tap blocks ``[P, I - P]``, ``P`` a
symmetric projector, along the width and the height. Each block's frequency response ``P + (I - P) e^{-i w}`` is
unitary (``P`` and ``I - P`` are complementary orthogonal projectors), so the composed kernel's DFT is unitary at
every frequency and the circular conv operator is orthogonal on every grid size. ``k_h - 1`` height blocks and
``k_w - 1`` width blocks give a ``k_h x k_w`` kernel. Where ``out != in``, the kernel is built on
``c = max(in, out)`` channels and its first ``out`` rows (``out < in``: row-orthogonal) or first ``in`` columns
(``out > in``: column-orthogonal) are kept, as Li et al. and Achour et al. (2022) allow.

Orthogonal matrices come from a QR decomposition (Gram-Schmidt, signs fixed so that ``diag(R) > 0``): exact to
rounding for any full-rank input and differentiable, unlike a truncated Bjorck iteration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def orthonormal_columns(matrix: torch.Tensor) -> torch.Tensor:
    """(..., n, r) with n >= r -> the Gram-Schmidt orthonormalization of its columns, (..., n, r).

    The Q factor of ``matrix = Q R`` with ``diag(R) > 0`` (unique for a full-rank matrix, a continuous map);
    a matrix with orthonormal columns is returned unchanged up to rounding.
    """
    q, r = torch.linalg.qr(matrix, mode="reduced")  # (..., n, r), (..., r, r)
    diagonal = torch.diagonal(r, dim1=-2, dim2=-1)  # (..., r)
    signs = torch.where(diagonal < 0, -torch.ones_like(diagonal), torch.ones_like(diagonal))
    return q * signs.unsqueeze(-2)


def symmetric_projector(frame: torch.Tensor) -> torch.Tensor:
    """(..., c, r) unconstrained -> the orthogonal projector onto the span of its columns, (..., c, c)."""
    basis = orthonormal_columns(frame)  # (..., c, r)
    return basis @ basis.transpose(-1, -2)


def _apply_block(kernel: torch.Tensor, projector: torch.Tensor, axis: int) -> torch.Tensor:
    """Compose ``kernel`` (G, c, c, h, w) with the 2-tap block [P, I - P] along ``axis`` (-1 width, -2 height).

    ``C[u] = P A[u] + (I - P) A[u - 1] = A[u - 1] + P (A[u] - A[u - 1])``, taps outside A being zero; the result
    is one tap longer along ``axis``. ``projector`` is (G, c, c).
    """
    pad_after = (0, 1) if axis == -1 else (0, 0, 0, 1)
    pad_before = (1, 0) if axis == -1 else (0, 0, 1, 0)
    current = F.pad(kernel, pad_after)  # A[u]
    previous = F.pad(kernel, pad_before)  # A[u - 1]
    return previous + torch.einsum("gom,gmihw->goihw", projector, current - previous)


def bcop_kernel(
    head: torch.Tensor,
    projector_frames: torch.Tensor | None,
    kernel_size: tuple[int, int],
    out_channels: int,
    in_channels: int,
) -> torch.Tensor:
    """The BCOP kernel, grouped ``nn.Conv2d`` layout (G * out, in, k_h, k_w).

    ``head``: (G, c, c) unconstrained, orthonormalized into ``H``. ``projector_frames``: (k_h + k_w - 2, G, c, r)
    unconstrained, the first ``k_h - 1`` for height blocks and the rest for width blocks (None for a 1x1 kernel).
    ``out_channels`` and ``in_channels`` are per group, ``c = max(out_channels, in_channels)``.
    """
    kernel_h, kernel_w = kernel_size
    kernel = orthonormal_columns(head)[..., None, None]  # (G, c, c, 1, 1)
    if projector_frames is not None:
        projectors = symmetric_projector(projector_frames)  # (k_h + k_w - 2, G, c, c)
        for index in range(kernel_h + kernel_w - 2):
            kernel = _apply_block(kernel, projectors[index], axis=-2 if index < kernel_h - 1 else -1)
    kernel = kernel[:, :out_channels, :in_channels]  # (G, out, in, k_h, k_w)
    return kernel.reshape(-1, in_channels, kernel_h, kernel_w)
