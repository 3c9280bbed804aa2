"""``imagefolder``: a folder of class sub-folders of images, read with torchvision's ``ImageFolder``.

``data.root`` holds either ``train/`` and ``val/`` (each with the same class folders) or the class folders
themselves, split by ``data.val_fraction`` and ``data.seed``. Images are resized to the model's input
(``Resize((H, W))``, no crop), converted to [0, 1] and standardized with the ImageNet mean and standard
deviation (their average for one channel). Read lazily unless ``in_memory: true``. Needs torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from nas.errors import DataError

from .config import DataConfig, DatasetInfo, Preprocessing
from .options import Option
from .registry import DatasetEntry, Loaded, register
from .split import split_indices
from .tensors import TensorPairDataset, resolve_shape

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NATURAL_SHAPE = (3, 224, 224)
OPTIONS = {
    "size": Option(None, int, "height = width when the model's input is not fixed (224)", minimum=1),
    "channels": Option(None, int, "1 (grayscale) or 3 when the model's input is not fixed (3)", minimum=1),
    "in_memory": Option(False, bool, "decode every image once and keep tensors (small folders)"),
}


def as_int64(target: int) -> torch.Tensor:
    """Class index as an int64 scalar tensor (a module-level function so DataLoader workers can pickle it)."""
    return torch.tensor(target, dtype=torch.int64)


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError:
        raise DataError("data 'imagefolder' needs torchvision: pip install 'nas[vision]'") from None
    return torchvision


def _statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if channels == 1:
        return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    return tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)


def preprocessing(channels: int) -> Preprocessing:
    """The transform below, as facts an exported model carries (PIL's bilinear resize is antialiased)."""
    mean, std = _statistics(channels)
    return Preprocessing(color="grayscale" if channels == 1 else "rgb", mean=mean, std=std)


def _transform(channels: int, height: int, width: int) -> Any:
    transforms = _torchvision().transforms
    # ImageFolder's loader already gives RGB PIL images.
    mean, std = _statistics(channels)
    first = [transforms.Grayscale(num_output_channels=1)] if channels == 1 else []
    return transforms.Compose(
        [*first, transforms.Resize((height, width)), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


def _folder(path: Path, transform: Any) -> Any:
    try:
        return _torchvision().datasets.ImageFolder(str(path), transform=transform, target_transform=as_int64)
    except (FileNotFoundError, OSError) as error:
        message = str(error).replace("\n", " ")
        raise DataError(f"data 'imagefolder': cannot read {str(path)!r}: {message}") from error


def _to_memory(dataset: Dataset) -> TensorPairDataset:
    samples = [dataset[index] for index in range(len(dataset))]  # type: ignore[arg-type]
    inputs = torch.stack([sample[0] for sample in samples]).contiguous()  # (N, C, H, W)
    return TensorPairDataset(inputs, torch.stack([sample[1] for sample in samples]))


def load(config: DataConfig, input_shape: tuple[int, int, int] | None, options: dict[str, Any]) -> Loaded:
    channels, height, width = resolve_shape(
        "imagefolder", NATURAL_SHAPE, input_shape, options["size"], options["channels"]
    )
    if channels not in (1, 3):
        raise DataError(
            f"data 'imagefolder': images are read as 1 or 3 channels, the model asks for {channels}"
        )
    if config.root is None:
        raise DataError("data 'imagefolder' needs data.root: a folder of class folders (or train/ and val/)")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data 'imagefolder': data.root {str(root)!r} is not a folder")
    transform = _transform(channels, height, width)
    train: Dataset
    val: Dataset
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = _folder(root / "train", transform), _folder(root / "val", transform)
        if train.classes != val.classes:
            raise DataError(f"data 'imagefolder': {str(root)!r} train/ and val/ have different class folders")
    else:
        folder = _folder(root, transform)
        train_index, val_index = split_indices(len(folder), config.val_fraction, config.seed)
        train, val = Subset(folder, train_index.tolist()), Subset(folder, val_index.tolist())
    classes = (train.dataset if isinstance(train, Subset) else train).classes
    if options["in_memory"]:
        train, val = _to_memory(train), _to_memory(val)
    info = DatasetInfo(
        task="classification",
        input_shape=(channels, height, width),
        num_classes=len(classes),
        class_names=tuple(classes),
        metrics=("accuracy",),
        train_size=len(train),  # type: ignore[arg-type]
        val_size=len(val),  # type: ignore[arg-type]
        preprocessing=preprocessing(channels),
    )
    return train, val, info


register(DatasetEntry("imagefolder", "class folders of images read with torchvision", OPTIONS, load))
