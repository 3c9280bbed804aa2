"""Fixtures for the data tests: tiny CIFAR folders in the real pickle format, a tiny image folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dump(path: Path, content: dict) -> None:
    # CIFAR's files are Python 2 pickles: byte-string keys and names, numpy uint8 rows of 3072 (R, G, B planes).
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)


def write_cifar10(root: Path, per_batch: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """root/cifar-10-batches-py with 5 training batches and a test batch of ``per_batch`` random images."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = rng.randint(0, 256, size=(6 * per_batch, 3072)).astype(np.uint8)
    labels = rng.randint(0, 10, size=6 * per_batch)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for number, name in enumerate(files):
        rows = slice(number * per_batch, (number + 1) * per_batch)
        _dump(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"labels": [int(label) for label in labels[rows]],
                b"data": data[rows],
                b"filenames": [f"image_{i}.png".encode() for i in range(per_batch)],
            },
        )
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    split = 5 * per_batch
    return {
        "train_data": data[:split],
        "train_labels": labels[:split],
        "test_data": data[split:],
        "test_labels": labels[split:],
    }


def write_cifar100(
    root: Path, train_count: int = 20, test_count: int = 8, seed: int = 1
) -> dict[str, np.ndarray]:
    """root/cifar-100-python with train, test and meta."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    arrays = {}
    for name, count in (("train", train_count), ("test", test_count)):
        fine = rng.randint(0, 100, size=count)
        data = rng.randint(0, 256, size=(count, 3072)).astype(np.uint8)
        arrays[name] = data
        _dump(
            folder / name,
            {
                b"filenames": [b"x.png"] * count,
                b"batch_label": name.encode(),
                b"fine_labels": [int(f) for f in fine],
                b"coarse_labels": [int(f) // 5 for f in fine],
                b"data": data,
            },
        )
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
        },
    )
    return arrays


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 5) -> Path:
    """root/<class>/<i>.png: 12x10 RGB images, each a solid colour (class index in red, i in green)."""
    from PIL import Image

    for class_index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            colour = (255 * class_index, 40 * index, 128)
            Image.new("RGB", (10, 12), colour).save(root / name / f"{index}.png")
    return root


@pytest.fixture
def cifar10_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_cifar10(tmp_path)


@pytest.fixture
def cifar100_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_cifar100(tmp_path)


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def make_image_folder():
    return write_image_folder


@pytest.fixture
def make_cifar10():
    return write_cifar10


@pytest.fixture
def make_cifar100():
    return write_cifar100
