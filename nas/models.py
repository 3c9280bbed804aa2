"""Model references: one syntax for the CLI and for space files.

- ``family:config`` builds a built-in family's config: ``regnet:RegNetY-400MF``, ``resnet:ResNet-50``,
  ``effnet:EN-B0``, ``vgg:VGG-16-cifar``, ``dncnn:DnCNN-17`` (``nas inspect --list`` shows them all);
  keyword arguments override the config's fields (``num_classes=10``).
- ``package.module:callable`` imports and calls it with the keyword arguments:
  ``torchvision.models:resnet50``; ``path/to/file.py:build`` loads a file of the user's.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import nn

import search_spaces

from .errors import ModelError

DEFAULT_INPUT_SHAPE = (3, 224, 224)


@dataclass
class BuiltModel:
    """A built model with what is known about it."""

    module: nn.Module
    reference: str
    input_shape: tuple[int, int, int] | None  # the family's default input, None when unknown
    family: str | None = None
    config: Any = None  # the family's parameter dataclass (with overrides applied)
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """``["num_classes=10", "pretrained=false"]`` -> ``{"num_classes": 10, "pretrained": False}`` (YAML scalars)."""
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ModelError(f"model argument {item!r}: expected KEY=VALUE")
        kwargs[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return kwargs


def split_reference(reference: str) -> tuple[str, str]:
    left, sep, right = reference.rpartition(":")
    if not sep or not left or not right:
        raise ModelError(
            f"model reference {reference!r}: expected FAMILY:CONFIG (e.g. regnet:RegNetY-400MF) or "
            f"package.module:callable (e.g. torchvision.models:resnet50); families: {', '.join(search_spaces.family_names())}"
        )
    return left, right


def build_model(reference: str, kwargs: Mapping[str, Any] | None = None) -> BuiltModel:
    """Build the model a reference names; a reference that cannot be built raises ModelError (one line)."""
    kwargs = dict(kwargs or {})
    left, right = split_reference(reference)
    if left in search_spaces.family_names():
        return _build_family(reference, left, right, kwargs)
    return _build_callable(reference, left, right, kwargs)


def _build_family(reference: str, family_name: str, config_name: str, kwargs: dict[str, Any]) -> BuiltModel:
    family = search_spaces.get_family(family_name)
    try:
        params = family.config(config_name)
    except KeyError as error:
        raise ModelError(str(error).strip("'\"")) from None
    fields = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ModelError(
            f"model {reference}: unknown argument {unknown[0]!r} (known: {', '.join(sorted(fields))})"
        )
    try:
        params = dataclasses.replace(params, **kwargs)
        module = family.build(params)
    except (TypeError, ValueError) as error:
        raise ModelError(f"model {reference}: {error}") from error
    return BuiltModel(module, reference, tuple(family.input_shape(params)), family_name, params, kwargs)


def _import_target(module_name: str) -> Any:
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ModelError(f"model file {module_name!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"nas_user_model_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        families = ", ".join(search_spaces.family_names())
        raise ModelError(
            f"model reference {module_name!r}: no module named {error.name!r} and no built-in family of that name "
            f"(families: {families})"
        ) from None


def _build_callable(reference: str, module_name: str, attribute: str, kwargs: dict[str, Any]) -> BuiltModel:
    target: Any = _import_target(module_name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelError(f"model reference {reference!r}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(f"model reference {reference!r} is not callable")
    try:
        module = target(**kwargs)
    except TypeError as error:
        raise ModelError(f"model {reference}: {error}") from error
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"model reference {reference!r} returned {type(module).__name__}, not a torch.nn.Module"
        )
    return BuiltModel(module, reference, None, kwargs=kwargs)


def list_models() -> dict[str, list[str]]:
    """Every built-in family and its configs."""
    return {name: list(search_spaces.get_family(name).configs) for name in search_spaces.family_names()}
