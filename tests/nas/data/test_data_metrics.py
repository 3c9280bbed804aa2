"""PSNR and SSIM against scikit-image; accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nas.data import accuracy, get_metric, psnr, ssim
from nas.data.metrics import gaussian_window


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(reference, distorted) pairs in [0, 1], (C, H, W): noise, blur, a different image, colour."""
    rng = np.random.RandomState(0)
    camera = skimage.data.camera()[100:196, 150:230].astype(np.float64) / 255  # (96, 80)
    moon = skimage.data.moon()[200:296, 200:280].astype(np.float64) / 255
    blurred = gaussian(camera, sigma=2)
    astronaut = (
        skimage.data.astronaut()[:64, 100:164].astype(np.float64).transpose(2, 0, 1) / 255
    )  # (3, 64, 64)
    return [
        (camera[None], np.clip(camera + rng.normal(0, 25 / 255, camera.shape), 0, 1)[None]),
        (camera[None], blurred[None]),
        (camera[None], moon[None]),
        (astronaut, np.clip(astronaut + rng.normal(0, 10 / 255, astronaut.shape), 0, 1)),
    ]


def _skimage_ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    return structural_similarity(
        reference,
        distorted,
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_matches_skimage(dtype):
    worst = 0.0
    for reference, distorted in _pairs():
        ours = ssim(torch.tensor(distorted[None], dtype=dtype), torch.tensor(reference[None], dtype=dtype))
        expected = _skimage_ssim(reference, distorted)
        worst = max(worst, abs(ours.item() - expected))
    assert worst < (1e-8 if dtype == torch.float64 else 1e-4)
    print(f"SSIM vs skimage ({dtype}): largest difference {worst:.2e} over {len(_pairs())} pairs")


def test_psnr_matches_skimage_per_image():
    pairs = [pair for pair in _pairs() if pair[0].shape[0] == 1]
    references = torch.tensor(np.stack([r for r, _ in pairs]))  # (3, 1, 96, 80)
    distorted = torch.tensor(np.stack([d for _, d in pairs]))
    ours = psnr(distorted, references)
    expected = [peak_signal_noise_ratio(r, d, data_range=1.0) for r, d in pairs]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10)
    print("PSNR vs skimage: " + ", ".join(f"{value:.4f}" for value in expected) + " dB")


def test_batched_ssim_equals_one_by_one_and_identity_values():
    pairs = [pair for pair in _pairs() if pair[0].shape[0] == 1]
    references = torch.tensor(np.stack([r for r, _ in pairs]))
    distorted = torch.tensor(np.stack([d for _, d in pairs]))
    batched = ssim(distorted, references)
    single = torch.cat([ssim(distorted[i : i + 1], references[i : i + 1]) for i in range(len(pairs))])
    torch.testing.assert_close(batched, single)
    assert torch.allclose(ssim(references, references), torch.ones(3, dtype=torch.float64))
    assert math.isinf(psnr(references, references)[0].item())


def test_gaussian_window_is_the_standard_one():
    window = gaussian_window()
    assert window.shape == (11,) and window.sum().item() == pytest.approx(1.0)
    assert window[5] / window[6] == pytest.approx(math.exp(1 / (2 * 1.5**2)))


def test_accuracy_and_lookup():
    logits = torch.tensor([[0.1, 2.0], [3.0, 0.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([1, 1, 1])).tolist() == [1.0, 0.0, 1.0]
    assert get_metric("ssim") is ssim
    with pytest.raises(KeyError, match="known: accuracy, psnr, ssim"):
        get_metric("mae")
