"""The shared pieces: config checks, options, registry, split, minibatch augmentation."""

from __future__ import annotations

import pytest
import torch

from nas.data import DataConfig, DatasetEntry, Option, get, names, register, split_indices
from nas.data.augment import CropFlip, random_crop, random_flip
from nas.data.options import parse_options
from nas.data.split import subset_indices
from nas.errors import DataError, NasError


def test_registered_names_and_unknown_dataset():
    assert set(names()) == {"cifar10", "cifar100", "denoise", "digits", "imagefolder", "synthetic"}
    with pytest.raises(
        DataError, match=r"unknown dataset 'mnist' \(known: .*digits.*'package.module:callable'\)"
    ):
        get("mnist")
    with pytest.raises(ValueError, match="already registered"):
        register(DatasetEntry("digits", "again", {}, get("digits").load))
    assert issubclass(DataError, NasError)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "data.name"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"seed": 1.5}, "data.seed"),
        ({"root": 3}, "data.root"),
        ({"options": [1]}, "data.options"),
    ],
)
def test_config_checks(fields, message):
    with pytest.raises(DataError, match=message):
        DataConfig(**{"name": "digits", **fields})


def test_parse_options_fills_defaults_and_checks_types():
    schema = {
        "size": Option(None, int, "size", minimum=1),
        "sigma": Option(25.0, float, "sigma"),
        "mode": Option("a", str, "mode", ("a", "b")),
    }
    assert parse_options("x", {"sigma": 15}, schema) == {"size": None, "sigma": 15, "mode": "a"}
    for given, message in [
        ({"size": 0}, "option 'size' must be >= 1"),
        ({"size": 2.5}, "option 'size' must be int"),
        ({"sigma": "high"}, "option 'sigma' must be float"),
        ({"mode": "c"}, "option 'mode' must be one of 'a', 'b'"),
        ({"colour": 1}, r"data 'x': unknown option 'colour' \(known: size, sigma, mode\)"),
    ]:
        with pytest.raises(DataError, match=message):
            parse_options("x", given, schema)


def test_split_is_a_partition_fixed_by_the_seed():
    torch.manual_seed(5)
    train, val = split_indices(101, 0.3, seed=4)
    torch.manual_seed(6)
    train_again, val_again = split_indices(101, 0.3, seed=4)
    assert torch.equal(train, train_again) and torch.equal(val, val_again)
    assert len(val) == 30 and sorted(torch.cat([train, val]).tolist()) == list(range(101))
    assert not torch.equal(val, split_indices(101, 0.3, seed=5)[1])
    subset = subset_indices(50, 10, seed=0, stream="s")
    assert len(subset) == 10 and len(set(subset.tolist())) == 10
    assert torch.equal(subset_indices(50, None, seed=0, stream="s"), torch.arange(50))


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    images = torch.randn(16, 2, 5, 6)
    cropped = random_crop(images, padding=2, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for index in range(16):
        windows = [padded[index, :, top : top + 5, left : left + 6] for top in range(5) for left in range(5)]
        assert any(torch.equal(cropped[index], window) for window in windows)
    assert not torch.equal(cropped, images)


def test_random_flip_flips_about_half():
    images = torch.randn(200, 1, 3, 4)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(flipped, images)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 70 < sum(mirrored) < 130


def test_crop_flip_is_reproducible_with_a_generator():
    images = torch.randn(8, 3, 8, 8)
    augment = CropFlip(padding=2, flip=True)
    first = augment(images, torch.zeros(8), torch.Generator().manual_seed(3))[0]
    second = augment(images, torch.zeros(8), torch.Generator().manual_seed(3))[0]
    assert torch.equal(first, second)
