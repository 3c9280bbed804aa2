"""In-memory datasets: input and target tensors, indexed directly by the training loop."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nas.errors import DataError


class BatchAugment(Protocol):
    """A training-time transform of one minibatch, on whatever device the batch is on."""

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class TensorPairDataset(TensorDataset):
    """``(inputs, targets)`` held as two tensors: ``.tensors == (inputs, targets)``.

    ``inputs`` is (N, C, H, W) float32; ``targets`` is (N,) int64 class indices or (N, C, H, W) float32 clean
    images. ``augment`` (None for validation sets) is applied per minibatch: a loop that indexes ``.tensors``
    directly should call ``dataset.batch(index, generator)`` or ``dataset.augment`` itself.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, augment: BatchAugment | None = None):
        super().__init__(inputs, targets)
        self.augment = augment

    @property
    def inputs(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def targets(self) -> torch.Tensor:
        return self.tensors[1]

    def batch(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch at ``index`` (int64), augmented when the dataset has an ``augment``."""
        inputs, targets = self.inputs[index], self.targets[index]
        if self.augment is not None:
            inputs, targets = self.augment(inputs, targets, generator)
        return inputs, targets

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if self.augment is None:
            return self.inputs[index], self.targets[index]
        inputs, targets = self.augment(self.inputs[index : index + 1], self.targets[index : index + 1])
        return inputs[0], targets[0]


def resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) images to (N, C, height, width); antialiased when shrinking."""
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def channel_stats(images: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of (N, C, H, W) images, shaped (1, C, 1, 1) or (1, 1, 1, 1)."""
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    std, mean = torch.std_mean(images.float(), dim=dims, keepdim=True)
    return mean, std.clamp_min(1e-8)


def standardize(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, in_place: bool = False
) -> torch.Tensor:
    """``(images - mean) / std`` as contiguous float32; ``in_place`` reuses a float32 ``images``' memory."""
    out = images.sub_(mean) if in_place else images.float().sub(mean)
    return out.div_(std).contiguous()


def replicate_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, 1, H, W) -> (N, channels, H, W) by copying the one channel."""
    if images.shape[1] == channels:
        return images
    return images.expand(-1, channels, -1, -1).contiguous()


def resolve_shape(
    dataset: str,
    natural: tuple[int, int, int],
    input_shape: tuple[int, int, int] | None,
    size: int | None,
    channels: int | None,
) -> tuple[int, int, int]:
    """The (C, H, W) samples are made to: the model's ``input_shape`` when fixed (the ``size`` and
    ``channels`` options must then agree with it), else the options over the dataset's natural shape."""
    if input_shape is None:
        return (channels or natural[0], size or natural[1], size or natural[2])
    if size is not None and (size, size) != tuple(input_shape[1:]):
        raise DataError(
            f"data {dataset!r}: option 'size' = {size} conflicts with the model input {input_shape}"
        )
    if channels is not None and channels != input_shape[0]:
        raise DataError(
            f"data {dataset!r}: option 'channels' = {channels} conflicts with the model input {input_shape}"
        )
    return input_shape
