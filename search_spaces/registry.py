"""Built-in model families: ``register_family``, ``get_family``, ``family_names`` (an
``operators.registry.Registry``).

A family is architecture as data: a frozen dataclass of parameters per named config plus a builder.
``regnet:RegNetY-400MF`` means family ``regnet``, config ``RegNetY-400MF``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from operators.registry import Registry


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


FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    """Add a family; a duplicate name raises ValueError."""
    return FAMILIES.register(family.name, family)


def get_family(name: str) -> Family:
    """The family registered as ``name``; an unknown name raises KeyError listing the known ones."""
    return FAMILIES.get(name)


def family_names() -> list[str]:
    return FAMILIES.names()
