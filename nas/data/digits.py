"""``digits``: scikit-learn's bundled 1,797 handwritten digits (8x8, values 0..16; UCI optdigits test set).

Pipeline: scale 0..16 to 0..1, resize to the model's input (bilinear), split, standardize with the training
split's mean and standard deviation, replicate the one channel to C. Nothing is downloaded.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from .config import DataConfig, DatasetInfo, Preprocessing
from .options import Option
from .registry import DatasetEntry, Loaded, register
from .split import split_indices
from .tensors import (
    TensorPairDataset,
    channel_stats,
    replicate_channels,
    resize,
    resolve_shape,
    standardize,
)

NATURAL_SHAPE = (1, 8, 8)
OPTIONS = {
    "size": Option(None, int, "height = width when the model's input is not fixed (natural 8)", minimum=1),
    "channels": Option(None, int, "channels when the model's input is not fixed (natural 1)", minimum=1),
}


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)  # (1797, 64) float in 0..16, (1797,) int
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load(config: DataConfig, input_shape: tuple[int, int, int] | None, options: dict[str, Any]) -> Loaded:
    channels, height, width = resolve_shape(
        "digits", NATURAL_SHAPE, input_shape, options["size"], options["channels"]
    )
    raw_images, raw_labels = _raw()
    images = torch.tensor(raw_images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0  # (N, 1, 8, 8)
    images = resize(images, height, width)  # (N, 1, H, W)
    labels = torch.tensor(raw_labels, dtype=torch.int64)  # (N,)
    train_index, val_index = split_indices(len(labels), config.val_fraction, config.seed)
    mean, std = channel_stats(images[train_index], per_channel=False)  # (1, 1, 1, 1) each

    def part(index: torch.Tensor) -> TensorPairDataset:
        inputs = replicate_channels(standardize(images[index], mean, std), channels)  # (n, C, H, W)
        return TensorPairDataset(inputs, labels[index])

    train, val = part(train_index), part(val_index)
    info = DatasetInfo(
        task="classification",
        input_shape=(channels, height, width),
        num_classes=10,
        class_names=tuple(str(digit) for digit in range(10)),
        metrics=("accuracy",),
        train_size=len(train),
        val_size=len(val),
        preprocessing=Preprocessing(
            color="grayscale",
            mean=(float(mean),),
            std=(float(std),),
            notes=("digits are light on a dark background (ink = 1.0), as in scikit-learn's digits",),
        ),
    )
    return train, val, info


register(DatasetEntry("digits", "scikit-learn's bundled 1,797 handwritten digits", OPTIONS, load))
