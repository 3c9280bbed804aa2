"""The dataset registry: ``register``, ``get``, ``names`` (an ``operators.registry.Registry``).

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
from operators.registry import Registry, UnknownName

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


DATASETS: Registry[DatasetEntry] = Registry("dataset", hint=", or 'package.module:callable'")


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset; a duplicate name raises ValueError."""
    return DATASETS.register(entry.name, entry)


def get(name: str) -> DatasetEntry:
    """The dataset registered as ``name``; an unknown name raises DataError listing the known ones."""
    try:
        return DATASETS.get(name)
    except UnknownName as error:
        raise DataError(str(error)) from None


def names() -> list[str]:
    return DATASETS.names()
