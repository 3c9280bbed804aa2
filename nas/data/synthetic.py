"""``synthetic``: small generated data for tests and smoke runs, learnable and deterministic.

Classification: each class has a random prototype image; a sample is ``(prototype + unit noise) / sqrt(2)``,
so classes are separable and inputs have roughly zero mean and unit variance. Denoising: smooth random
images in [0, 1] (bilinear upsampling of a 1/4-size random field through a sigmoid) plus Gaussian noise of
standard deviation ``sigma / 255``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .config import DataConfig, DatasetInfo, default_metrics
from .options import Option
from .registry import DatasetEntry, Loaded, register
from .split import generator, split_indices
from .tensors import TensorPairDataset, resolve_shape

NATURAL_SHAPE = (3, 16, 16)
OPTIONS = {
    "num_samples": Option(256, int, "samples in total, before the split", minimum=2),
    "num_classes": Option(10, int, "classes (classification)", minimum=2),
    "task": Option("classification", str, "what to generate", ("classification", "denoising")),
    "size": Option(None, int, "height = width when the model's input is not fixed (16)", minimum=1),
    "channels": Option(None, int, "channels when the model's input is not fixed (3)", minimum=1),
    "sigma": Option(25.0, float, "denoising noise standard deviation on the 0-255 scale", minimum=0),
}


def _classification(
    shape: tuple[int, int, int], options: dict[str, Any], seed: int
) -> tuple[torch.Tensor, ...]:
    num_samples, num_classes = options["num_samples"], options["num_classes"]
    prototypes = torch.randn((num_classes, *shape), generator=generator(seed, "synthetic/prototypes"))
    labels = torch.arange(num_samples) % num_classes  # (N,) balanced
    labels = labels[torch.randperm(num_samples, generator=generator(seed, "synthetic/labels"))]
    noise = torch.randn((num_samples, *shape), generator=generator(seed, "synthetic/noise"))  # (N, C, H, W)
    return (prototypes[labels] + noise) / math.sqrt(2.0), labels


def _denoising(shape: tuple[int, int, int], options: dict[str, Any], seed: int) -> tuple[torch.Tensor, ...]:
    channels, height, width = shape
    coarse_shape = (options["num_samples"], channels, max(1, height // 4), max(1, width // 4))
    coarse = 2.0 * torch.randn(coarse_shape, generator=generator(seed, "synthetic/images"))
    clean = torch.sigmoid(F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False))
    noise = torch.randn(clean.shape, generator=generator(seed, "synthetic/noise"))  # (N, C, H, W)
    return clean + options["sigma"] / 255.0 * noise, clean


def load(config: DataConfig, input_shape: tuple[int, int, int] | None, options: dict[str, Any]) -> Loaded:
    shape = resolve_shape("synthetic", NATURAL_SHAPE, input_shape, options["size"], options["channels"])
    task = options["task"]
    make = _classification if task == "classification" else _denoising
    inputs, targets = make(shape, options, config.seed)
    train_index, val_index = split_indices(len(inputs), config.val_fraction, config.seed)
    train = TensorPairDataset(inputs[train_index].contiguous(), targets[train_index].contiguous())
    val = TensorPairDataset(inputs[val_index].contiguous(), targets[val_index].contiguous())
    num_classes = options["num_classes"] if task == "classification" else None
    info = DatasetInfo(
        task=task,
        input_shape=shape,
        num_classes=num_classes,
        class_names=tuple(f"class_{index}" for index in range(num_classes)) if num_classes else None,
        metrics=default_metrics(task),
        train_size=len(train),
        val_size=len(val),
    )
    return train, val, info


register(DatasetEntry("synthetic", "generated data for tests (classification or denoising)", OPTIONS, load))
