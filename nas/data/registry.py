"""The dataset registry: ``register``, ``get``, ``names``.

A dataset is a name, a one-line summary, its option schema and a loader
``load(config, input_shape, options) -> (train, val, info)``; the options reach the loader already
validated and with defaults filled in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from nas.errors import DataError

from .config import DataConfig, DatasetInfo
from .options import Option

Loaded = tuple[Dataset, Dataset, DatasetInfo]
Loader = Callable[[DataConfig, "tuple[int, int, int] | None", dict[str, Any]], Loaded]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    summary: str
    options: Mapping[str, Option]
    load: Loader


_DATASETS: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset; a duplicate name raises ValueError."""
    if entry.name in _DATASETS:
        raise ValueError(f"dataset {entry.name!r} is already registered")
    _DATASETS[entry.name] = entry
    return entry


def get(name: str) -> DatasetEntry:
    """The dataset registered as ``name``; an unknown name raises DataError listing the known ones."""
    try:
        return _DATASETS[name]
    except KeyError:
        known = ", ".join(names())
        raise DataError(f"unknown dataset {name!r} (known: {known}, or 'package.module:callable')") from None


def names() -> list[str]:
    return list(_DATASETS)
