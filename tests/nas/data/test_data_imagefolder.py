"""imagefolder: a tiny generated folder of PNGs, both layouts, in-memory, missing torchvision."""

from __future__ import annotations

import sys

import pytest
import torch

from nas.data import DataConfig, TensorPairDataset, load_data
from nas.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from nas.errors import DataError


def test_split_folder_resized_and_normalized(image_root):
    train, val, info = load_data(DataConfig("imagefolder", root=str(image_root)), input_shape=(3, 8, 6))
    assert info.class_names == ("cats", "dogs") and info.num_classes == 2
    assert (info.train_size, info.val_size) == (8, 2) and info.input_shape == (3, 8, 6)
    image, label = train[0]
    assert image.shape == (3, 8, 6) and image.dtype == torch.float32
    assert label.dtype == torch.int64
    # each PNG is one solid colour: red = 255 * class index, blue = 128
    red = (float(label) - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    blue = (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]
    assert torch.allclose(image[0], torch.full((8, 6), red), atol=1e-5)
    assert torch.allclose(image[2], torch.full((8, 6), blue), atol=1e-5)


def test_train_and_val_folders_in_memory_and_grayscale(tmp_path, make_image_folder):
    make_image_folder(tmp_path / "train", per_class=3)
    make_image_folder(tmp_path / "val", per_class=2)
    options = {"size": 8, "channels": 1, "in_memory": True}
    train, val, info = load_data(DataConfig("imagefolder", root=str(tmp_path), options=options))
    assert isinstance(train, TensorPairDataset) and isinstance(val, TensorPairDataset)
    assert train.inputs.shape == (6, 1, 8, 8) and val.inputs.shape == (4, 1, 8, 8)
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1] and info.input_shape == (1, 8, 8)


def test_missing_torchvision_says_what_to_install(image_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(DataError, match=r"needs torchvision: pip install 'nas\[vision\]'"):
        load_data(DataConfig("imagefolder", root=str(image_root)), input_shape=(3, 8, 8))


def test_missing_root_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_data(DataConfig("imagefolder", root=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="cannot read"):
        load_data(DataConfig("imagefolder", root=str(tmp_path)))
