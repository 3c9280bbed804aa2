"""synthetic: shapes, balance, learnability, the denoising variant."""

from __future__ import annotations

import pytest
import torch

from nas.data import DataConfig, load_data


def test_classification_shapes_balance_and_determinism():
    config = DataConfig("synthetic", options={"num_samples": 100, "num_classes": 4})
    train, val, info = load_data(config)
    assert info.input_shape == (3, 16, 16) and info.num_classes == 4 and len(info.class_names) == 4
    assert (info.train_size, info.val_size) == (80, 20)
    labels = torch.cat([train.targets, val.targets])
    assert torch.bincount(labels).tolist() == [25, 25, 25, 25]
    again, _, _ = load_data(config)
    assert torch.equal(train.inputs, again.inputs)


def test_classes_are_separable_by_their_training_means():
    train, val, _ = load_data(DataConfig("synthetic", options={"num_samples": 400, "num_classes": 5}))
    means = torch.stack([train.inputs[train.targets == k].mean(0) for k in range(5)])  # (5, 3, 16, 16)
    distances = torch.cdist(val.inputs.flatten(1), means.flatten(1))  # (n_val, 5)
    accuracy = (distances.argmin(1) == val.targets).float().mean().item()
    assert accuracy > 0.95
    assert train.inputs.std().item() == pytest.approx(1.0, abs=0.05)


def test_denoising_variant_and_model_shape():
    train, val, info = load_data(
        DataConfig("synthetic", options={"task": "denoising", "num_samples": 64, "sigma": 25}), (1, 20, 20)
    )
    assert info.task == "denoising" and info.metrics == ("psnr", "ssim") and info.num_classes is None
    assert train.inputs.shape == train.targets.shape == (51, 1, 20, 20)
    assert 0 <= train.targets.min() and train.targets.max() <= 1
    assert (train.inputs - train.targets).std().item() == pytest.approx(25 / 255, rel=0.05)
