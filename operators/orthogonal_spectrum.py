"""Measuring how orthogonal a convolution is: the exact singular values of its circular operator, and the
conv-orthogonality loss of Wang et al. (2020) with the column-orthogonal correction of Achour et al. (2022).

Singular values (Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR 2019): a stride-1
convolution with circular padding on an ``n_h x n_w`` grid is block-diagonalized by the 2-D DFT, so its singular
values are, over every frequency ``(u, v)``, the singular values of the ``(out x in)`` matrix
``K_hat(u, v) = sum_{a, b} K[:, :, a, b] exp(2 pi i (u a / n_h + v b / n_w))``. A stride-``s`` convolution is first
rewritten as a stride-1 one by the polyphase identity ``a = s q + r``: the input splits into ``s_h s_w`` phases
(a permutation, so singular values are unchanged) and the kernel into ``in * s_h * s_w`` channels of size
``ceil(k / s)``, acting on the ``(n_h / s_h) x (n_w / s_w)`` grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dilate_kernel(weight: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    """The dense kernel of a dilated conv: (out, in, kh, kw) -> (out, in, d_h (kh-1)+1, d_w (kw-1)+1)."""
    if dilation == (1, 1):
        return weight
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    dense = weight.new_zeros(
        out_channels, in_channels, dilation[0] * (kernel_h - 1) + 1, dilation[1] * (kernel_w - 1) + 1
    )
    dense[:, :, :: dilation[0], :: dilation[1]] = weight
    return dense


def _polyphase(weight: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """(out, in, kh, kw) -> (out, in * s_h * s_w, ceil(kh / s_h), ceil(kw / s_w)): K_r[o, (c, r_h, r_w), q] = K[o, c, s q + r]."""
    stride_h, stride_w = stride
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    phases_h, phases_w = -(-kernel_h // stride_h), -(-kernel_w // stride_w)
    weight = F.pad(weight, (0, phases_w * stride_w - kernel_w, 0, phases_h * stride_h - kernel_h))
    weight = weight.reshape(out_channels, in_channels, phases_h, stride_h, phases_w, stride_w)
    weight = weight.permute(0, 1, 3, 5, 2, 4)  # (out, in, s_h, s_w, q_h, q_w)
    return weight.reshape(out_channels, in_channels * stride_h * stride_w, phases_h, phases_w)


def _fold(weight: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Wrap a kernel onto an ``n_h x n_w`` torus (taps at q and q + n coincide): (..., kh, kw) -> (..., n_h, n_w)."""
    grid_h, grid_w = grid
    kernel_h, kernel_w = weight.shape[-2:]
    folds_h, folds_w = -(-kernel_h // grid_h), -(-kernel_w // grid_w)
    weight = F.pad(weight, (0, folds_w * grid_w - kernel_w, 0, folds_h * grid_h - kernel_h))
    weight = weight.reshape(*weight.shape[:-2], folds_h, grid_h, folds_w, grid_w)
    return weight.sum(dim=(-4, -2))


def conv_singular_values(
    weight: torch.Tensor,
    input_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """Every singular value of the circular-padded convolution with ``weight`` on an ``input_size`` grid.

    ``weight`` is (out, in / groups, kh, kw) as in ``nn.Conv2d``; ``input_size`` must be divisible by ``stride``.
    Returns a 1-D tensor, sorted descending, of ``groups * (n_h / s_h) * (n_w / s_w) * min(out / groups,
    in / groups * s_h * s_w)`` values (Sedghi et al. 2019, with the polyphase rewrite for strides). The padding
    amount only shifts the output circularly, which leaves the singular values unchanged.
    """
    height, width = input_size
    if height % stride[0] or width % stride[1]:
        raise ValueError(f"input_size {input_size} must be divisible by the stride {stride}")
    dense = _polyphase(dilate_kernel(weight, dilation), stride)  # (out, in_g * s_h * s_w, q_h, q_w)
    grid = (height // stride[0], width // stride[1])
    folded = _fold(dense, grid)  # (out, in', n_h, n_w)
    spectrum = torch.fft.fft2(folded)  # (out, in', n_h, n_w), complex
    out_channels, in_phases = spectrum.shape[:2]
    spectrum = spectrum.reshape(groups, out_channels // groups, in_phases, *grid).permute(0, 3, 4, 1, 2)
    values = torch.linalg.svdvals(spectrum)  # (groups, n_h, n_w, min(out_g, in'))
    return values.flatten().sort(descending=True).values


def orthogonality_loss(
    weight: torch.Tensor,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """The conv-orthogonality loss, summed over groups (a scalar; zero exactly for an orthogonal conv).

    Wang et al. (2020), "Orthogonal Convolutional Neural Networks", eq. (10): ``||Conv(K, K, padding=P,
    stride=S) - I_r0||_F^2`` with ``P = floor((k - 1) / S) S``, where ``Conv(K, K)`` treats the ``out`` filters
    as a batch of ``in``-channel images and ``I_r0`` is the identity at the centre tap: the Gram matrix of the
    rows of the (circular) conv operator at every output-position shift. When a group cannot be row-orthogonal
    (``out_g > in_g * s_h * s_w``), the column-orthogonality loss ``||K^T K - I||^2`` equals that value minus
    ``out_g - in_g s_h s_w`` (Achour et al. 2022, "Existence, Stability and Scalability of Orthogonal CNNs",
    per output position: ``||A A^T - I_r||^2 - ||A^T A - I_c||^2 = r - c``); that correction is applied.
    """
    dense = dilate_kernel(weight, dilation)  # (G * M, C, kh, kw)
    out_channels, in_per_group, kernel_h, kernel_w = dense.shape
    per_group = out_channels // groups
    # the filters of each group as a batch of images: (M, G * C, kh, kw)
    images = dense.reshape(groups, per_group, in_per_group, kernel_h, kernel_w).transpose(0, 1)
    images = images.reshape(per_group, groups * in_per_group, kernel_h, kernel_w)
    pad_h = (kernel_h - 1) // stride[0] * stride[0]
    pad_w = (kernel_w - 1) // stride[1] * stride[1]
    # (M, G * M, 2 pad_h / s_h + 1, 2 pad_w / s_w + 1)
    gram = F.conv2d(images, dense, stride=stride, padding=(pad_h, pad_w), groups=groups)
    gram = gram.reshape(per_group, groups, per_group, *gram.shape[-2:])  # (M, G, M, gh, gw)
    center = (pad_h // stride[0], pad_w // stride[1])
    identity = torch.eye(per_group, dtype=dense.dtype, device=dense.device).unsqueeze(1)  # (M, 1, M)
    target = torch.zeros_like(gram)
    target[:, :, :, center[0], center[1]] = identity.expand(per_group, groups, per_group)
    loss = (gram - target).square().sum()
    excess = per_group - in_per_group * stride[0] * stride[1]
    if excess > 0:  # column-orthogonal case
        loss = loss - groups * excess
    return loss
