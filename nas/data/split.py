"""Deterministic randomness for data: seeded generators, the train/validation split, subsets.

Everything here is a function of ``(seed, stream)`` only, never of the global RNG state, so the same
``data.seed`` gives the same split in every process and on every backend.
"""

from __future__ import annotations

import math
import zlib

import torch

from nas.errors import DataError


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and a stream name (``"split"``, ``"noise/val"``, ...).

    Streams keep independent uses of one seed apart; ``zlib.crc32`` is stable across processes (``hash`` of a
    string is not).
    """
    mixed = (int(seed) * 0x9E3779B1 + zlib.crc32(stream.encode())) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def val_count(total: int, val_fraction: float) -> int:
    """Validation samples out of ``total``: ``round(total * val_fraction)`` (half up), at least 1 and leaving
    at least 1 for training."""
    if total < 2:
        raise DataError(f"cannot split {total} sample(s) into training and validation sets")
    return min(total - 1, max(1, math.floor(total * val_fraction + 0.5)))


def split_indices(total: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), both sorted int64, from one seeded permutation of ``total``."""
    order = torch.randperm(total, generator=generator(seed, "split"))  # (total,)
    count = val_count(total, val_fraction)
    return order[count:].sort().values, order[:count].sort().values


def subset_indices(total: int, limit: int | None, seed: int, stream: str) -> torch.Tensor:
    """Sorted indices of a seeded random subset of at most ``limit`` of ``total`` items (all when None)."""
    if limit is None or limit >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=generator(seed, stream))[:limit].sort().values
