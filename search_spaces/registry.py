"""Built-in model families: ``register_family``, ``get_family``, ``family_names``.

A family is architecture as data: a frozen dataclass of parameters per named config plus a builder.
``regnet:RegNetY-400MF`` means family ``regnet``, config ``RegNetY-400MF``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Family:
    """One built-in family.

    ``configs`` maps a config name to its frozen parameter dataclass; ``build(params)`` returns the model;
    ``input_shape(params)`` the default input (channels, height, width) for that config.
    """

    name: str
    summary: str
    configs: Mapping[str, Any]
    build: Callable[[Any], nn.Module]
    input_shape: Callable[[Any], tuple[int, int, int]]

    def config(self, config_name: str) -> Any:
        try:
            return self.configs[config_name]
        except KeyError:
            known = ", ".join(self.configs)
            raise KeyError(f"family {self.name!r} has no config {config_name!r} (known: {known})") from None


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r} (known: {', '.join(family_names())})") from None


def family_names() -> list[str]:
    return list(_FAMILIES)
