"""``cifar10`` / ``cifar100``: the "python version" batches (Krizhevsky, 2009) from a local folder.

``data.root`` is the folder holding ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``), or that folder itself. Nothing
is downloaded at run time. Images are scaled to [0, 1], resized to the model's input if it differs from
32x32, and standardized per channel with the training set's mean and standard deviation. The validation set
is the standard test batch (``split: test``) or a seeded split of the training batches (``split: train``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import DataError

from .augment import CropFlip
from .config import DataConfig, DatasetInfo, Preprocessing
from .options import Option
from .registry import DatasetEntry, Loaded, register
from .safe_pickle import load_data_pickle
from .split import split_indices, subset_indices
from .tensors import TensorPairDataset, channel_stats, resize, resolve_shape, standardize


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's files are and which pickle keys hold its labels and class names."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    expected: str


CIFAR10 = CifarLayout(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    "data_batch_1..5, test_batch, batches.meta",
)
CIFAR100 = CifarLayout("cifar100", "cifar-100-python", ("train",), "test", "meta", "train, test, meta")
LABEL_KEYS = {"cifar10": "labels", "fine": "fine_labels", "coarse": "coarse_labels"}
NAME_KEYS = {"cifar10": "label_names", "fine": "fine_label_names", "coarse": "coarse_label_names"}


def _options(extra: dict[str, Option]) -> dict[str, Option]:
    return {
        "split": Option(
            "test", str, "validation set: the test batch or a split of training", ("test", "train")
        ),
        "limit": Option(None, int, "keep a seeded random subset of this many training images", minimum=1),
        "val_limit": Option(
            None, int, "keep a seeded random subset of this many validation images", minimum=1
        ),
        "random_crop": Option(False, bool, "training: random crop after zero padding (crop_padding)"),
        "crop_padding": Option(4, int, "padding of the random crop", minimum=0),
        "horizontal_flip": Option(False, bool, "training: random left-right flip"),
        **extra,
    }


def find_folder(layout: CifarLayout, root: str | None) -> Path:
    """The folder holding the batches: ``root/<folder>`` or ``root`` itself; a one-line DataError if neither."""
    nothing = "nothing is downloaded at run time"
    if root is None:
        raise DataError(
            f"data {layout.name!r} needs data.root: a folder holding {layout.folder}/ ({layout.expected}); {nothing}"
        )
    base = Path(root).expanduser()
    for folder in (base / layout.folder, base):
        if all((folder / file).is_file() for file in (*layout.train_files, layout.test_file)):
            return folder
    raise DataError(
        f"data {layout.name!r}: no {layout.folder}/ with {layout.expected} in {str(base)!r} "
        f"(the python version from https://www.cs.toronto.edu/~kriz/cifar.html; {nothing})"
    )


def _unpickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle (written by Python 2: byte-string keys) as a dict with str keys."""
    try:
        with open(path, "rb") as file:
            content = load_data_pickle(file, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"cannot read CIFAR file {str(path)!r}: {error}") from error
    if not isinstance(content, dict):
        raise DataError(f"CIFAR file {str(path)!r} does not hold a dict")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


def _read(folder: Path, files: tuple[str, ...], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from the given batch files."""
    images, labels = [], []
    for file in files:
        batch = _unpickle(folder / file)
        if "data" not in batch or label_key not in batch:
            raise DataError(f"CIFAR file {str(folder / file)!r} has no 'data' or {label_key!r} entry")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
        if len(labels[-1]) != len(images[-1]):
            raise DataError(
                f"CIFAR file {str(folder / file)!r}: {len(images[-1])} images, {len(labels[-1])} labels"
            )
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _class_names(folder: Path, layout: CifarLayout, name_key: str, num_classes: int) -> tuple[str, ...]:
    if not (folder / layout.meta_file).is_file():
        return tuple(str(index) for index in range(num_classes))
    names = _unpickle(folder / layout.meta_file).get(name_key)
    if names is None or len(names) != num_classes:
        raise DataError(f"CIFAR file {str(folder / layout.meta_file)!r} has no {num_classes} {name_key!r}")
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def _images_and_labels(
    layout: CifarLayout, label_key: str, folder: Path, config: DataConfig, options: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training and validation images (n, 3, 32, 32) uint8 and labels (n,) int64, split and limited."""
    images, labels = _read(folder, layout.train_files, label_key)
    if options["split"] == "test":
        train_index = torch.arange(len(labels))
        val_images, val_labels = _read(folder, (layout.test_file,), label_key)
    else:
        train_index, val_index = split_indices(len(labels), config.val_fraction, config.seed)
        val_images, val_labels = images[val_index], labels[val_index]
    train_index = train_index[subset_indices(len(train_index), options["limit"], config.seed, "cifar/limit")]
    keep = subset_indices(len(val_labels), options["val_limit"], config.seed, "cifar/val_limit")
    if len(train_index) < len(labels):
        images, labels = images[train_index], labels[train_index]
    return images, labels, val_images[keep], val_labels[keep]


def _load(
    layout: CifarLayout, label_mode: str, config: DataConfig, input_shape: Any, options: dict
) -> Loaded:
    channels, height, width = resolve_shape(layout.name, (3, 32, 32), input_shape, None, None)
    if channels != 3:
        raise DataError(f"data {layout.name!r}: images have 3 channels, the model asks for {channels}")
    folder = find_folder(layout, config.root)
    images, labels, val_images, val_labels = _images_and_labels(
        layout, LABEL_KEYS[label_mode], folder, config, options
    )
    num_classes = {"cifar10": 10, "fine": 100, "coarse": 20}[label_mode]
    if min(labels.min(), val_labels.min()) < 0 or max(labels.max(), val_labels.max()) >= num_classes:
        raise DataError(f"data {layout.name!r}: labels outside 0..{num_classes - 1} in {str(folder)!r}")
    class_names = _class_names(folder, layout, NAME_KEYS[label_mode], num_classes)

    train_inputs = resize(images.float().div_(255.0), height, width)  # (n, 3, H, W) in [0, 1]
    del images
    mean, std = channel_stats(train_inputs, per_channel=True)  # (1, 3, 1, 1) each
    train_inputs = standardize(train_inputs, mean, std, in_place=True)
    val_inputs = standardize(resize(val_images.float().div_(255.0), height, width), mean, std, in_place=True)
    padding = options["crop_padding"] if options["random_crop"] else 0
    augment = CropFlip(padding, options["horizontal_flip"]) if padding or options["horizontal_flip"] else None
    train = TensorPairDataset(train_inputs, labels.contiguous(), augment)
    val = TensorPairDataset(val_inputs, val_labels.contiguous())
    info = DatasetInfo(
        task="classification",
        input_shape=(3, height, width),
        num_classes=num_classes,
        class_names=class_names,
        metrics=("accuracy",),
        train_size=len(train),
        val_size=len(val),
        preprocessing=Preprocessing(
            color="rgb", mean=tuple(mean.flatten().tolist()), std=tuple(std.flatten().tolist())
        ),
    )
    return train, val, info


def load_cifar10(config: DataConfig, input_shape: Any, options: dict[str, Any]) -> Loaded:
    return _load(CIFAR10, "cifar10", config, input_shape, options)


def load_cifar100(config: DataConfig, input_shape: Any, options: dict[str, Any]) -> Loaded:
    return _load(CIFAR100, options["labels"], config, input_shape, options)


register(DatasetEntry("cifar10", "CIFAR-10 python batches from data.root", _options({}), load_cifar10))
register(
    DatasetEntry(
        "cifar100",
        "CIFAR-100 python batches from data.root",
        _options({"labels": Option("fine", str, "100 fine or 20 coarse classes", ("fine", "coarse"))}),
        load_cifar100,
    )
)
