"""``package.module:callable``: the user's own datasets.

The callable is called with ``data.options`` as keyword arguments and returns ``(train, val)`` or
``(train, val, info)``, where ``info`` is a dict with any of ``task``, ``num_classes``, ``class_names``,
``metrics``. Samples must be ``(input tensor (C, H, W), target)`` pairs. Whatever ``info`` leaves out is
inferred: the task from the target (an image-shaped tensor means denoising), ``num_classes`` from
``class_names``, a ``classes`` attribute, or the largest label in ``.tensors``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

from nas.errors import DataError

from .config import TASKS, DataConfig, DatasetInfo, default_metrics
from .registry import Loaded

INFO_KEYS = ("task", "num_classes", "class_names", "metrics")


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".replace("\n", " ")


def resolve(reference: str) -> Any:
    """The object named ``package.module:attribute`` (dotted attribute paths allowed)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise DataError(f"data {reference!r}: expected 'package.module:callable'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise DataError(f"data {reference!r}: cannot import {module_name!r} ({_one_line(error)})") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise DataError(f"data {reference!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise DataError(f"data {reference!r}: {attribute!r} is not callable")
    return target


def _first_sample(reference: str, role: str, dataset: Any) -> tuple[torch.Tensor, Any]:
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(f"data {reference!r}: the {role} set is not a Dataset (got {type(dataset).__name__})")
    if len(dataset) == 0:
        raise DataError(f"data {reference!r}: the {role} set is empty")
    sample = dataset[0]
    if not isinstance(sample, (tuple, list)) or len(sample) != 2 or not isinstance(sample[0], torch.Tensor):
        raise DataError(f"data {reference!r}: {role} samples must be (input tensor, target) pairs")
    if sample[0].dim() != 3 or not sample[0].is_floating_point():
        raise DataError(
            f"data {reference!r}: {role} inputs must be float (C, H, W) tensors, got "
            f"{sample[0].dtype} {tuple(sample[0].shape)}"
        )
    return sample[0], sample[1]


def _num_classes(reference: str, train: Any, info: Mapping[str, Any]) -> int:
    if info.get("num_classes") is not None:
        return int(info["num_classes"])
    if info.get("class_names") is not None:
        return len(info["class_names"])
    inner = train.dataset if hasattr(train, "dataset") else train
    if hasattr(inner, "classes"):
        return len(inner.classes)
    if hasattr(inner, "tensors"):
        return int(inner.tensors[1].max()) + 1
    raise DataError(
        f"data {reference!r}: cannot tell the number of classes; return info {{'num_classes': N}}"
    )


def _unpack(reference: str, result: Any) -> tuple[Any, Any, dict[str, Any]]:
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise DataError(
            f"data {reference!r}: must return (train, val) or (train, val, info), got {type(result).__name__}"
        )
    info = dict(result[2]) if len(result) == 3 else {}
    if len(result) == 3 and not isinstance(result[2], Mapping):
        raise DataError(f"data {reference!r}: info must be a dict, got {type(result[2]).__name__}")
    unknown = [key for key in info if key not in INFO_KEYS]
    if unknown:
        raise DataError(
            f"data {reference!r}: unknown info key {unknown[0]!r} (known: {', '.join(INFO_KEYS)})"
        )
    return result[0], result[1], info


def load(config: DataConfig, input_shape: tuple[int, int, int] | None) -> Loaded:
    """Call ``config.name`` with ``config.options`` and validate what it returns."""
    reference = config.name
    function = resolve(reference)
    try:
        result = function(**dict(config.options))
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"data {reference!r}: the call failed ({_one_line(error)})") from error
    train, val, info = _unpack(reference, result)
    train_input, train_target = _first_sample(reference, "training", train)
    val_input, _ = _first_sample(reference, "validation", val)
    if val_input.shape != train_input.shape:
        raise DataError(
            f"data {reference!r}: training inputs are {tuple(train_input.shape)}, "
            f"validation inputs {tuple(val_input.shape)}"
        )
    image_target = isinstance(train_target, torch.Tensor) and train_target.shape == train_input.shape
    task = info.get("task", "denoising" if image_target else "classification")
    if task not in TASKS:
        raise DataError(f"data {reference!r}: info task must be one of {', '.join(TASKS)}, got {task!r}")
    classification = task == "classification"
    num_classes = _num_classes(reference, train, info) if classification else None
    names = info.get("class_names") or getattr(getattr(train, "dataset", train), "classes", None)
    try:
        dataset_info = DatasetInfo(
            task=task,
            input_shape=tuple(int(size) for size in train_input.shape),  # type: ignore[arg-type]
            num_classes=num_classes,
            class_names=tuple(str(name) for name in names) if classification and names else None,
            metrics=tuple(str(metric) for metric in info.get("metrics") or default_metrics(task)),
            train_size=len(train),
            val_size=len(val),
        )
    except DataError as error:
        raise DataError(f"data {reference!r}: {error}") from None
    return train, val, dataset_info
