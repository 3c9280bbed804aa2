"""digits: sizes, shapes, normalization, deterministic split, option checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from nas.data import DataConfig, load_data, split_indices
from nas.errors import DataError


def test_natural_shape_sizes_and_split():
    train, val, info = load_data(DataConfig("digits"))
    assert info.task == "classification"
    assert info.input_shape == (1, 8, 8)
    assert info.num_classes == 10 and info.class_names == tuple("0123456789")
    assert info.metrics == ("accuracy",)
    assert info.train_size + info.val_size == 1797
    assert (info.train_size, info.val_size) == (len(train), len(val)) == (1438, 359)
    inputs, labels = train.tensors
    assert inputs.shape == (1438, 1, 8, 8) and inputs.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))


def test_standardized_with_training_statistics():
    train, val, _ = load_data(DataConfig("digits", seed=3))
    raw_images, raw_labels = load_digits(return_X_y=True)
    train_index, val_index = split_indices(1797, 0.2, seed=3)
    scaled = raw_images.reshape(-1, 1, 8, 8) / 16.0
    mean, std = scaled[train_index.numpy()].mean(), scaled[train_index.numpy()].std(ddof=1)
    np.testing.assert_allclose(train.inputs.numpy(), (scaled[train_index.numpy()] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(val.inputs.numpy(), (scaled[val_index.numpy()] - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(val.targets.numpy(), raw_labels[val_index.numpy()])
    assert abs(train.inputs.mean().item()) < 1e-5
    assert train.inputs.std().item() == pytest.approx(1.0, abs=1e-4)
    print(f"digits standardization: mean {mean:.4f} std {std:.4f} (0..1 scale, training split, seed 3)")


def test_resized_and_channels_replicated_to_model_input():
    train, val, info = load_data(DataConfig("digits"), input_shape=(3, 32, 16))
    assert info.input_shape == (3, 32, 16)
    assert train.inputs.shape == (1438, 3, 32, 16) and val.inputs.shape == (359, 3, 32, 16)
    assert torch.equal(train.inputs[:, 0], train.inputs[:, 2])
    assert abs(train.inputs.mean().item()) < 1e-4


def test_size_and_channels_options_without_model_input():
    _, _, info = load_data(DataConfig("digits", options={"size": 16, "channels": 3}))
    assert info.input_shape == (3, 16, 16)


def test_split_is_deterministic_and_ignores_global_rng():
    torch.manual_seed(1)
    np.random.seed(1)
    first, first_val, _ = load_data(DataConfig("digits", seed=7))
    torch.manual_seed(99)
    np.random.seed(99)
    torch.rand(10)
    second, second_val, _ = load_data(DataConfig("digits", seed=7))
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first_val.targets, second_val.targets)
    other, _, _ = load_data(DataConfig("digits", seed=8))
    assert not torch.equal(first.targets, other.targets)


def test_val_fraction_sets_the_split_size():
    train, val, _ = load_data(DataConfig("digits", val_fraction=0.5))
    assert (len(train), len(val)) == (898, 899)


def test_option_errors_name_the_option():
    with pytest.raises(DataError, match=r"unknown option 'sz' \(known: size, channels\)"):
        load_data(DataConfig("digits", options={"sz": 16}))
    with pytest.raises(DataError, match="option 'size' = 16 conflicts"):
        load_data(DataConfig("digits", options={"size": 16}), input_shape=(1, 32, 32))
    with pytest.raises(DataError, match="option 'size' must be int"):
        load_data(DataConfig("digits", options={"size": True}))
