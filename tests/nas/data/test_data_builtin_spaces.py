"""The data of the built-in quick spaces is what their comments promise: the default task (convops.yaml) trains
on 359 digits at their native 8x8 and validates on 1,438, so a 95% Wilson interval is about +-1 point near 95%
accuracy; denoise_small.yaml validates on 2,000 patches with noise of sigma 50."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import load_digits

from nas.data import DataConfig, load_data, psnr, split_indices
from nas.space import load_space


def _data(space_name: str):
    space = load_space(space_name)
    config = DataConfig(
        space.data.name, space.data.root, space.data.val_fraction, space.data.seed, dict(space.data.options)
    )
    return space, load_data(config, tuple(space.model.input))


def wilson_half_width(accuracy: float, count: int, z: float = 1.96) -> float:
    """Half the width of the Wilson score interval (Wilson 1927) of a proportion measured on ``count`` samples."""
    return (
        z * math.sqrt(accuracy * (1 - accuracy) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    )


def test_default_space_validates_on_most_digits_at_native_resolution():
    space, (train, val, info) = _data("convops.yaml")
    assert (info.train_size, info.val_size) == (359, 1438)
    assert info.input_shape == (1, 8, 8)
    raw_images, raw_labels = load_digits(return_X_y=True)
    train_index, val_index = split_indices(1797, space.data.val_fraction, space.data.seed)
    scaled = raw_images.reshape(-1, 1, 8, 8) / 16.0
    mean, std = scaled[train_index.numpy()].mean(), scaled[train_index.numpy()].std(ddof=1)
    # not resampled: the validation inputs are the raw digits, only standardized
    np.testing.assert_allclose(val.inputs.numpy(), (scaled[val_index.numpy()] - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(val.targets.numpy(), raw_labels[val_index.numpy()])
    assert wilson_half_width(0.95, info.val_size) < 0.012  # old default: 359 images, 0.023
    assert set(train.targets.tolist()) == set(range(10))


def test_wilson_half_width_by_hand():
    # p = 0.5, n = 100: (1.96 * sqrt(0.0025 + 0.000096)) / 1.0384 = 0.0961
    assert abs(wilson_half_width(0.5, 100) - 0.0961) < 1e-4


def test_denoise_small_space_data():
    space, (train, val, info) = _data("denoise_small.yaml")
    assert info.task == "denoising" and info.input_shape == (1, 16, 16)
    assert (info.train_size, info.val_size) == (2000, 2000)
    noisy_psnr = psnr(val.inputs.clamp(0, 1), val.targets)  # (2000,) dB per patch
    expected = 10 * math.log10(1 / (50 / 255) ** 2)  # 14.15 dB before clipping
    assert expected < float(noisy_psnr.mean()) < expected + 1.5  # clipping to [0, 1] removes some noise
    assert torch.all(val.targets >= 0) and torch.all(val.targets <= 1)
