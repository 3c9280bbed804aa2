"""The metadata embedded in every export as the extra file ``nas.json``, readable with torch alone::

    files = {"nas.json": ""}
    model = torch.jit.load("model.pt", _extra_files=files)
    metadata = json.loads(files["nas.json"])

Keys: ``format``, ``source`` (``study`` or ``model``), ``model`` (the reference) and ``model_kwargs``,
``input_shape`` (C, H, W), ``space``, ``study``, ``trial``, ``candidate``, ``metrics`` (studies), ``operator``,
``scale``, ``weights`` (model references), ``task``, ``num_classes``, ``class_names`` (where known),
``fold_bn``, ``folded_batchnorms``, ``collapsed_operators``, ``torchscript`` (``script`` or ``trace``),
``costs`` of the exported graph (nas conventions), ``versions`` of the packages that wrote it.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from typing import Any

FORMAT = "nas-export/1"
VERSIONED_PACKAGES = ("torch", "torchvision", "optuna", "onnx", "onnxscript")


def package_versions() -> dict[str, str]:
    """Python's and the installed versions of the packages an export depends on (absent ones left out)."""
    from .. import __version__

    versions = {"python": platform.python_version(), "nas": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def to_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, indent=2, sort_keys=True, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def parse(text: str | None) -> dict[str, Any] | None:
    """The metadata of an export (None when the file has none); bad JSON is reported as such."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return {"error": f"nas.json is not valid JSON: {error}"}
    return data if isinstance(data, dict) else {"error": "nas.json does not hold a JSON object"}
