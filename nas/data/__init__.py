"""Datasets for the search: ``load_data(DataConfig, input_shape) -> (train, val, DatasetInfo)``.

Registered: ``digits``, ``denoise``, ``cifar10``, ``cifar100``, ``imagefolder``, ``synthetic``; any
``package.module:callable`` too. Nothing is downloaded at run time. Small datasets come back as
:class:`TensorPairDataset` (``.tensors == (inputs, targets)``, an ``augment`` applied per minibatch by
``.batch(index, generator)``); the split is a function of ``data.seed`` only.
"""

from . import cifar, denoise, digits, imagefolder, synthetic  # noqa: F401  (registers the datasets)
from .config import DataConfig, DatasetInfo
from .load import load_data
from .metrics import METRICS, accuracy, get_metric, psnr, ssim
from .options import Option
from .registry import DatasetEntry, get, names, register
from .split import split_indices
from .tensors import TensorPairDataset

__all__ = [
    "METRICS",
    "DataConfig",
    "DatasetEntry",
    "DatasetInfo",
    "Option",
    "TensorPairDataset",
    "accuracy",
    "get",
    "get_metric",
    "load_data",
    "names",
    "psnr",
    "register",
    "split_indices",
    "ssim",
]
