"""The metadata embedded in every export as the extra file ``nas.json``, readable with torch alone::

    files = {"nas.json": ""}
    model = torch.jit.load("model.pt", _extra_files=files)
    metadata = json.loads(files["nas.json"])

Keys: ``format``, ``source`` (``study`` or ``model``), ``model`` (the reference) and ``model_kwargs``,
``input_shape`` (C, H, W), ``space``, ``study``, ``trial``, ``candidate``, ``metrics`` (studies), ``operator``,
``scale``, ``weights`` (model references), ``task``, ``num_classes``, ``class_names`` (where known),
``fold_bn``, ``folded_batchnorms``, ``collapsed_operators``, ``torchscript`` (``script`` or ``trace``),
``costs`` of the exported graph (nas conventions), ``versions`` of the packages that wrote it; for studies and
runs (``source`` ``run``: ``run``, ``trained_from``, ``scaling``), ``preprocessing``: what to do to an image
before the model sees it (``color``, ``value_range``, ``resize`` size and interpolation, ``channels``,
``normalize`` mean and std per channel, ``steps`` in words) and what it returns (``output``: ``logits`` or
``clean image``), ``notes``.
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


def preprocessing_metadata(info: Any | None, input_shape: tuple[int, ...]) -> dict[str, Any] | None:
    """What a user must do to an image before the model sees it (``nas.data.Preprocessing`` of the dataset, at
    the model's input shape), and what the model returns; None when the dataset does not say."""
    facts = getattr(info, "preprocessing", None)
    if facts is None:
        return None
    channels, height, width = (int(s) for s in input_shape)

    def per_channel(values: tuple[float, ...] | None) -> list[float] | None:
        return (
            None
            if values is None
            else [float(v) for v in (values * channels if len(values) == 1 else values)]
        )

    return {
        "color": facts.color,
        "value_range": [float(v) for v in facts.value_range],
        "resize": {
            "size": [height, width],
            "interpolation": facts.interpolation,
            "antialias": facts.antialias,
            "align_corners": False,
        }
        if facts.resize
        else None,
        "channels": channels,
        "replicate_gray": facts.color == "grayscale" and channels > 1,
        "normalize": {"mean": per_channel(facts.mean), "std": per_channel(facts.std)} if facts.mean else None,
        "steps": [
            f"convert the image to {facts.color}",
            f"scale its values to [{facts.value_range[0]:g}, {facts.value_range[1]:g}] (8-bit pixels / 255)",
            *(
                [f"resize to {height}x{width} ({facts.interpolation}, antialias={facts.antialias})"]
                if facts.resize
                else []
            ),
            *(
                [f"copy the gray channel to {channels} channels"]
                if facts.color == "grayscale" and channels > 1
                else []
            ),
            *(["subtract mean and divide by std, per channel"] if facts.mean else []),
        ],
        "output": facts.output,
        "notes": list(facts.notes),
    }


def parse(text: str | None) -> dict[str, Any] | None:
    """The metadata of an export (None when the file has none); bad JSON is reported as such."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return {"error": f"nas.json is not valid JSON: {error}"}
    return data if isinstance(data, dict) else {"error": "nas.json does not hold a JSON object"}
