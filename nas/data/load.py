"""``load_data``: a DataConfig (and the model's input shape, when the space fixes it) to datasets."""

from __future__ import annotations

from torch.utils.data import Dataset

from nas.errors import DataError

from . import callable as callable_dataset
from .config import DataConfig, DatasetInfo
from .options import parse_options
from .registry import get


def _check_input_shape(name: str, input_shape: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(size, int) and size > 0 for size in shape):
        raise DataError(f"data {name!r}: input_shape must be (channels, height, width), got {input_shape!r}")
    return shape  # type: ignore[return-value]


def load_data(
    config: DataConfig, input_shape: tuple[int, int, int] | None = None
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, validation, info) for ``config``.

    ``input_shape`` is the model's input (C, H, W) when the space fixes it; the dataset is resized and its
    channels adapted to it where that makes sense, otherwise a mismatch is a DataError. None means the
    dataset's natural shape. Samples are ``(input float32, target)`` pairs; small datasets come back as
    :class:`~nas.data.tensors.TensorPairDataset` exposing ``.tensors``.
    """
    shape = _check_input_shape(config.name, input_shape)
    if ":" in config.name:
        train, val, info = callable_dataset.load(config, shape)
    else:
        entry = get(config.name)
        options = parse_options(config.name, config.options, entry.options)
        train, val, info = entry.load(config, shape, options)
    if shape is not None and info.input_shape != shape:
        raise DataError(
            f"data {config.name!r}: samples have shape {info.input_shape}, the model expects {shape}"
        )
    return train, val, info
