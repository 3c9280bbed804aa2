"""Export: the trained model as a TorchScript file (plus a ``torch.export`` program and, optionally, ONNX) that
runs wherever PyTorch runs, without this project.

- ``prepare``: collapse operators, materialize parametrizations, fold BatchNorm (``fold_bn``), eval mode.
- ``script``: ``torch.jit.script`` (``torch.jit.trace`` fallback), ``.pt2`` and ``.onnx`` writers.
- ``select``: which trial of a study; ``sources``: a trial, a ``nas train`` run or a model reference to a
  module.
- ``verify``: reload in a fresh process without the project and compare; ``costs``: costs counted from a file.
- ``pipeline``: ``export_module``; ``read``: ``inspect_export``; ``metadata``: the embedded ``nas.json``.
"""

from .costs import count_exported
from .fold_bn import fold_batchnorm, folded_conv
from .pipeline import ExportOptions, ExportResult, export_module
from .prepare import PreparedModel, prepare_for_export
from .read import inspect_export
from .script import load_torchscript, to_torchscript
from .select import SelectedTrial, select_trial
from .sources import export_reference, export_run, export_trial
from .verify import RELATIVE_TOLERANCE, Verification, VerificationError, verify_export

__all__ = [
    "RELATIVE_TOLERANCE",
    "ExportOptions",
    "ExportResult",
    "PreparedModel",
    "SelectedTrial",
    "Verification",
    "VerificationError",
    "count_exported",
    "export_module",
    "export_reference",
    "export_run",
    "export_trial",
    "fold_batchnorm",
    "folded_conv",
    "inspect_export",
    "load_torchscript",
    "prepare_for_export",
    "select_trial",
    "to_torchscript",
    "verify_export",
]
