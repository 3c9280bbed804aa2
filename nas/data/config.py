"""The data section of a space file and what a loaded dataset says about itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.errors import DataError

TASKS = ("classification", "denoising")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset a search trains on; built by the space-file loader from the YAML ``data:`` section.

    ``name`` is a registered dataset (``digits``, ``denoise``, ``cifar10``, ``cifar100``, ``imagefolder``,
    ``synthetic``) or ``"package.module:callable"``. ``root`` is the folder of ``cifar*`` / ``imagefolder``.
    ``options`` are dataset-specific and validated by the dataset (an unknown option is an error).
    """

    name: str
    root: str | None = None
    val_fraction: float = 0.2
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"data.name must be a non-empty string, got {self.name!r}")
        if self.root is not None and not isinstance(self.root, str):
            raise DataError(f"data.root must be a folder path (string), got {self.root!r}")
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
            raise DataError(f"data.val_fraction must be a number in (0, 1), got {fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(f"data.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.options, Mapping):
            raise DataError(f"data.options must be a mapping, got {type(self.options).__name__}")


@dataclass(frozen=True)
class Preprocessing:
    """What an image goes through before the model sees it: what an exported model's user must repeat.

    In order: convert the image to ``color`` (``grayscale`` or ``rgb``); scale its values to ``value_range``
    (8-bit pixels: divide by 255); resize to the model's input (``interpolation``, ``antialias``, corners not
    aligned) unless ``resize`` is False; copy a grayscale channel to the model's channels; subtract ``mean`` and
    divide by ``std`` (one value, or one per channel; None: not normalized). ``output`` says what the model
    returns: ``logits`` (classification) or ``clean image`` (denoising, in ``value_range``). ``notes``: anything
    else a user must know (the foreground's polarity, the noise level).
    """

    color: str
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: bool = True
    interpolation: str = "bilinear"
    antialias: bool = True
    output: str = "logits"
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.color not in ("grayscale", "rgb"):
            raise DataError(f"preprocessing color must be grayscale or rgb, got {self.color!r}")
        if (self.mean is None) != (self.std is None):
            raise DataError("preprocessing needs both mean and std, or neither")


@dataclass(frozen=True)
class DatasetInfo:
    """What the trial pipeline needs to know about a loaded dataset.

    ``input_shape`` is one sample as the model sees it, (channels, height, width). Classification targets are
    class indices (int64); denoising targets are the clean images (the input is the noisy one).
    ``preprocessing``: how a raw image becomes such a sample (None: the dataset does not say).
    """

    task: str
    input_shape: tuple[int, int, int]
    num_classes: int | None
    class_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    train_size: int
    val_size: int
    preprocessing: Preprocessing | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"dataset task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if len(self.input_shape) != 3 or not all(int(size) > 0 for size in self.input_shape):
            raise DataError(
                f"dataset input_shape must be (channels, height, width), got {self.input_shape!r}"
            )
        if self.task == "classification" and (self.num_classes is None or self.num_classes < 2):
            raise DataError(f"a classification dataset needs num_classes >= 2, got {self.num_classes!r}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise DataError(f"{len(self.class_names)} class names for {self.num_classes} classes")


def default_metrics(task: str) -> tuple[str, ...]:
    """Accuracy for classification; PSNR and SSIM for denoising."""
    return ("accuracy",) if task == "classification" else ("psnr", "ssim")
