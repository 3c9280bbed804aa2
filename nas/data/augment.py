"""Training-time minibatch transforms on tensors: random crop with padding, horizontal flip, fresh noise.

They run on the batch's device, vectorized over the batch (no per-sample Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator that draws on ``device``: ``generator`` itself when it is there already, else a new one
    seeded from it (deterministic, and the random numbers never cross the bus)."""
    if generator is None or generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def _uniform_integers(
    high: int, count: int, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """``count`` integers in [0, high) on ``device``."""
    return torch.randint(0, high, (count,), generator=on_device(generator, device), device=device)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad (N, C, H, W) images by ``padding`` and crop back to H x W at a random offset per image
    (the CIFAR augmentation of He et al., 2016)."""
    if padding == 0:
        return images
    count, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))  # (N, C, H + 2p, W + 2p)
    top = _uniform_integers(2 * padding + 1, count, images.device, generator)  # (N,)
    left = _uniform_integers(2 * padding + 1, count, images.device, generator)  # (N,)
    rows = top[:, None] + torch.arange(height, device=images.device)  # (N, H)
    cols = left[:, None] + torch.arange(width, device=images.device)  # (N, W)
    batch = torch.arange(count, device=images.device)[:, None, None]  # (N, 1, 1)
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return cropped.permute(0, 3, 1, 2).contiguous()


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each (C, H, W) image left-right with probability 1/2."""
    flip = _uniform_integers(2, images.shape[0], images.device, generator).bool()  # (N,)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class CropFlip:
    """Random crop (zero padding ``padding``, 0 = off) and/or random horizontal flip of the inputs."""

    padding: int = 4
    flip: bool = True

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = random_crop(inputs, self.padding, generator)
        if self.flip:
            inputs = random_flip(inputs, generator)
        return inputs, targets


@dataclass(frozen=True)
class FreshNoise:
    """Denoising: a new additive white Gaussian noise draw for every minibatch, ``inputs = clean + std * n``
    (DnCNN, Zhang et al., 2017, trains on fresh noise each batch). ``std`` is on the [0, 1] scale."""

    std: float

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        draw = on_device(generator, targets.device)
        noise = torch.randn(targets.shape, generator=draw, device=targets.device, dtype=targets.dtype)
        return targets + self.std * noise, targets
