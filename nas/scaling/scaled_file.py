"""The scaled-model file (``nas scale --out scaled.yaml``): how to rebuild a scaled model deterministically.

It records the base model reference and arguments, the rule, factor, method and seed; rebuilding runs the same
scaling again (``load_scaled``) and checks that it gives the architecture recorded under ``result``, which is
there for humans (and as that check). A space file refers to it as ``model: {scaled: path/to/scaled.yaml}``::

    format: nas-scaled-model/1
    base: {model: regnet:RegNetY-4.0GF, args: {}, input: null, leaf: []}
    scaling: {rule: dWr, factor: 4.0, method: parametric, seed: 0, match_flops: true}
    result:
      input: [3, 240, 240]
      architecture: {depths: [2, 7, 14, 2], widths: [224, 336, 896, 1904], group_widths: [112, 112, 112, 112], ...}
      costs: {before: {...}, after: {...}, ratios: {...}}
      notes: [...]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..errors import NasError
from ..models import BuiltModel, build_model
from .api import ScaledModel, scale_model

FORMAT = "nas-scaled-model/1"
_KEYS = {
    "": {"format", "base", "scaling", "result"},
    "base": {"model", "args", "input", "leaf"},
    "scaling": {"rule", "factor", "method", "seed", "match_flops"},
    "result": {"input", "architecture", "config", "costs", "notes"},
}


def scaled_document(
    scaled: ScaledModel,
    reference: str,
    model_args: dict[str, Any] | None = None,
    base_input: tuple[int, ...] | None = None,
    leaf: list[str] | None = None,
    seed: int | None = 0,
    match_flops: bool = True,
    costs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The file's content as a dict (what ``save_scaled`` writes)."""
    result: dict[str, Any] = {"input": list(scaled.input_shape), "architecture": scaled.after.as_dict()}
    if scaled.config is not None and dataclasses.is_dataclass(scaled.config):
        result["config"] = _plain(dataclasses.asdict(scaled.config))
    if costs is not None:
        result["costs"] = _plain(costs)
    result["notes"] = list(scaled.notes)
    return {
        "format": FORMAT,
        "base": {
            "model": reference,
            "args": dict(model_args or {}),
            "input": list(base_input) if base_input else None,
            "leaf": list(leaf or []),
        },
        "scaling": {
            "rule": scaled.rule,
            "factor": scaled.factor,
            "method": scaled.method,
            "seed": seed,
            "match_flops": match_flops,
        },
        "result": result,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_scaled(path: str | Path, document: dict[str, Any]) -> Path:
    path = Path(path)
    header = (
        "# nas scaled model: rebuild with nas.scaling.load_scaled(path); in a space: model: {scaled: PATH}\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, width=120, default_flow_style=None))
    return path


def _check_keys(data: Any, section: str, path: Path) -> None:
    if not isinstance(data, dict):
        raise NasError(f"scaled model file {path}: {section or 'the file'} must be a mapping")
    unknown = sorted(set(data) - _KEYS[section])
    if unknown:
        where = f"{section}." if section else ""
        raise NasError(
            f"scaled model file {path}: unknown key {where}{unknown[0]} (known: {', '.join(sorted(_KEYS[section]))})"
        )


def read_scaled(path: str | Path) -> dict[str, Any]:
    """Load and validate a scaled-model file (unknown keys and a wrong format are errors)."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"scaled model file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise NasError(f"scaled model file {path}: not valid YAML ({error})".splitlines()[0]) from None
    _check_keys(data, "", path)
    if data.get("format") != FORMAT:
        raise NasError(f"scaled model file {path}: format {data.get('format')!r}, expected {FORMAT!r}")
    for section in ("base", "scaling", "result"):
        _check_keys(data.get(section), section, path)
    if not data["base"].get("model") or "rule" not in data["scaling"] or "factor" not in data["scaling"]:
        raise NasError(f"scaled model file {path}: base.model, scaling.rule and scaling.factor are required")
    return data


def rescale(data: dict[str, Any], materialize: bool = True) -> tuple[BuiltModel, ScaledModel]:
    """Build the base model of a scaled-model document and scale it again."""
    from ..graph.capture import resolve_leaf_types

    base, scaling = data["base"], data["scaling"]
    built = build_model(base["model"], base.get("args") or {})
    scaled = scale_model(
        built,
        scaling["factor"],
        scaling["rule"],
        base.get("input"),
        method=scaling.get("method", "auto"),
        materialize=materialize,
        seed=scaling.get("seed", 0),
        match_flops=scaling.get("match_flops", True),
        leaf_modules=resolve_leaf_types(base.get("leaf") or []),
    )
    return built, scaled


def load_scaled(path: str | Path, materialize: bool = True) -> BuiltModel:
    """Rebuild the scaled model a file describes, checking it is the architecture the file records.

    The BuiltModel's ``reference`` is the base's, ``config`` the scaled family parameters (an AnyNetParams for
    a scaled RegNet) or None for graph-level scaling, ``input_shape`` the scaled input.
    """
    data = read_scaled(path)
    built, scaled = rescale(data, materialize)
    recorded = data["result"]
    if "input" in recorded and list(recorded["input"]) != list(scaled.input_shape):
        raise NasError(
            f"scaled model file {path}: rebuilding gives input {list(scaled.input_shape)}, the file "
            f"records {recorded['input']}"
        )
    architecture = scaled.after.as_dict()
    for key, value in (recorded.get("architecture") or {}).items():
        if architecture.get(key) != value:
            raise NasError(
                f"scaled model file {path}: rebuilding gives {key} {architecture.get(key)}, the file "
                f"records {value} (the model or the scaling code changed since it was written)"
            )
    return BuiltModel(
        scaled.module, built.reference, scaled.input_shape, built.family, scaled.config, built.kwargs
    )
