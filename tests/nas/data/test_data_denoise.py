"""denoise: patches of skimage's bundled images, noise level, PSNR of the noisy input, fresh noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch

from nas.data import DataConfig, load_data, psnr
from nas.data.denoise import DEFAULT_IMAGES, patches
from nas.errors import DataError


@pytest.fixture(scope="module")
def default_denoise():
    return load_data(DataConfig("denoise"))


def test_default_patch_count_and_shapes(default_denoise):
    train, val, info = default_denoise
    expected = 0
    for name in DEFAULT_IMAGES:
        height, width = getattr(skimage.data, name)().shape[:2]
        expected += ((height - 40) // 40 + 1) * ((width - 40) // 40 + 1)
    assert info.task == "denoising" and info.metrics == ("psnr", "ssim")
    assert info.input_shape == (1, 40, 40) and info.num_classes is None
    assert info.train_size + info.val_size == expected
    assert info.val_size == round(0.2 * expected)
    assert train.inputs.shape == train.targets.shape == (info.train_size, 1, 40, 40)
    assert train.targets.min() >= 0 and train.targets.max() <= 1
    print(f"denoise default: {expected} patches of 40x40 ({info.train_size} train, {info.val_size} val)")


def test_noise_level_and_psnr_of_noisy_input(default_denoise):
    _, val, _ = default_denoise
    noise = val.inputs - val.targets
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.01)
    assert abs(noise.mean().item()) < 3 * (25 / 255) / math.sqrt(noise.numel())
    mean_psnr = psnr(val.inputs, val.targets).mean().item()
    expected = 20 * math.log10(255 / 25)
    assert mean_psnr == pytest.approx(expected, abs=0.05)
    print(
        f"denoise sigma 25: noise std {noise.std().item() * 255:.3f}/255, PSNR {mean_psnr:.3f} dB "
        f"(expected {expected:.3f})"
    )


def test_patches_are_the_image_cut_row_major():
    image = torch.arange(2 * 7 * 9, dtype=torch.float32).reshape(2, 7, 9)
    cut = patches(image, 3, 4, stride=2)  # rows 0, 2, 4; columns 0, 2, 4
    assert cut.shape == (9, 2, 3, 4)
    assert torch.equal(cut[0], image[:, 0:3, 0:4])
    assert torch.equal(cut[4], image[:, 2:5, 2:6])
    assert torch.equal(cut[8], image[:, 4:7, 4:8])


def test_clean_patches_come_from_the_camera_image():
    train, val, _ = load_data(DataConfig("denoise", val_fraction=0.25, options={"images": ["camera"]}))
    camera = skimage.data.camera().astype(np.float32) / 255  # (512, 512)
    all_patches = torch.cat([train.targets, val.targets])
    assert len(all_patches) == 144
    reference = {
        camera[row : row + 40, col : col + 40].tobytes()
        for row in range(0, 473, 40)
        for col in range(0, 473, 40)
    }
    assert {patch[0].numpy().tobytes() for patch in all_patches} == reference


def test_fresh_noise_per_batch_keeps_the_target():
    train, _, _ = load_data(DataConfig("denoise", options={"images": ["moon"], "sigma": 50}))
    index = torch.arange(32)
    inputs, targets = train.batch(index, torch.Generator().manual_seed(0))
    assert torch.equal(targets, train.targets[index])
    assert not torch.equal(inputs, train.inputs[index])
    assert (inputs - targets).std().item() == pytest.approx(50 / 255, rel=0.05)
    fixed, _, _ = load_data(DataConfig("denoise", options={"images": ["moon"], "fresh_noise": False}))
    assert fixed.augment is None


def test_options_patch_size_stride_max_patches_and_colour():
    train, val, info = load_data(
        DataConfig("denoise", options={"images": ["astronaut", "coffee"], "stride": 20, "max_patches": 50}),
        input_shape=(3, 32, 32),
    )
    assert info.input_shape == (3, 32, 32) and len(train) + len(val) == 50
    assert not torch.equal(train.targets[:, 0], train.targets[:, 1])  # colour kept
    again, _, _ = load_data(
        DataConfig("denoise", options={"images": ["astronaut", "coffee"], "stride": 20, "max_patches": 50}),
        input_shape=(3, 32, 32),
    )
    assert torch.equal(train.inputs, again.inputs)


def test_unknown_image_and_bad_channels_are_errors():
    with pytest.raises(DataError, match="unknown image 'lena'"):
        load_data(DataConfig("denoise", options={"images": ["lena"]}))
    with pytest.raises(DataError, match="1 or 3 channels"):
        load_data(DataConfig("denoise", options={"images": ["camera"]}), input_shape=(2, 40, 40))
