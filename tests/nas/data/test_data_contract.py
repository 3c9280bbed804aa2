"""Every registered dataset keeps the contract the trial pipeline relies on."""

from __future__ import annotations

import pytest
import torch

from nas.data import DataConfig, TensorPairDataset, load_data, names

SMALL_OPTIONS = {
    "denoise": {"images": ["camera"], "max_patches": 20},
    "synthetic": {"num_samples": 20},
}


def _config(name: str, tmp_path, make_cifar10, make_cifar100, make_image_folder) -> DataConfig:
    if name == "cifar10":
        make_cifar10(tmp_path)
    elif name == "cifar100":
        make_cifar100(tmp_path)
    elif name == "imagefolder":
        make_image_folder(tmp_path)
    return DataConfig(name, root=str(tmp_path), options=SMALL_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", names())
def test_contract(name, tmp_path, make_cifar10, make_cifar100, make_image_folder):
    config = _config(name, tmp_path, make_cifar10, make_cifar100, make_image_folder)
    shape = (3, 24, 24) if name != "denoise" else (1, 24, 24)
    train, val, info = load_data(config, input_shape=shape)
    assert info.input_shape == shape and (info.train_size, info.val_size) == (len(train), len(val))
    for dataset in (train, val):
        inputs, target = dataset[0]
        assert inputs.shape == shape and inputs.dtype == torch.float32
        if info.task == "classification":
            assert target.dtype == torch.int64 and 0 <= int(target) < info.num_classes
        else:
            assert target.shape == shape and target.dtype == torch.float32
        if isinstance(dataset, TensorPairDataset):
            assert dataset.tensors[0].shape == (len(dataset), *shape)
    assert all(metric in ("accuracy", "psnr", "ssim") for metric in info.metrics)
