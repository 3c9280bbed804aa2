"""Per-sample evaluation metrics on batches: accuracy, PSNR, SSIM.

Each metric maps ``(prediction, target)`` to one value per sample, shape (N,); average them over a set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1.0 where ``argmax(logits)`` equals the class index, else 0.0: (N, K), (N,) -> (N,)."""
    return (logits.argmax(dim=1) == targets).to(torch.float32)


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``10 log10(data_range^2 / MSE)``: (N, C, H, W) -> (N,).

    Identical images give ``inf``. Matches ``skimage.metrics.peak_signal_noise_ratio`` per image.
    """
    error = (prediction - target).flatten(1)  # (N, C*H*W)
    mse = error.pow(2).mean(dim=1)  # (N,)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalized 1-D Gaussian ``exp(-k^2 / (2 sigma^2))``, k = -(size-1)/2 .. (size-1)/2: (size,)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def ssim(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (Wang et al., IEEE TIP 2004, eq. 13): (N, C, H, W) -> (N,).

    Local statistics under an 11x11 Gaussian window (sigma 1.5), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``;
    the SSIM map over the valid region (no padding), averaged over channels and positions. This equals
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L)``, which crops the same border before averaging.
    """
    if prediction.shape != target.shape or prediction.dim() != 4:
        raise ValueError(
            f"ssim needs two (N, C, H, W) tensors of one shape, got {prediction.shape}, {target.shape}"
        )
    if min(prediction.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(prediction.shape)}"
        )
    dtype = torch.float64 if prediction.dtype == torch.float64 else torch.float32
    x, y = prediction.to(dtype), target.to(dtype)
    channels = x.shape[1]
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    window = gaussian_window().to(device=x.device, dtype=dtype)  # (11,)
    groups = 5 * channels
    maps = F.conv2d(maps, window.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)  # (N, 5C, H, W')
    maps = F.conv2d(maps, window.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)  # (N, 5C, H', W')
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = maps.chunk(5, dim=1)  # each (N, C, H', W')
    variance_x = mean_xx - mean_x**2
    variance_y = mean_yy - mean_y**2
    covariance = mean_xy - mean_x * mean_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * mean_x * mean_y + c1) * (2 * covariance + c2)
    denominator = (mean_x**2 + mean_y**2 + c1) * (variance_x + variance_y + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)  # (N,)


METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "accuracy": accuracy,
    "psnr": psnr,
    "ssim": ssim,
}


def get_metric(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The metric called ``name``; KeyError listing the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None
