"""The operator registry: ``register``, ``get``, ``names``."""

from __future__ import annotations

from .base import ConvOperator

_OPERATORS: dict[str, type[ConvOperator]] = {}


def register(cls: type[ConvOperator]) -> type[ConvOperator]:
    """Class decorator adding an operator under its ``name``; a duplicate name raises."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _OPERATORS:
        raise ValueError(f"operator {cls.name!r} is already registered ({_OPERATORS[cls.name].__name__})")
    _OPERATORS[cls.name] = cls
    return cls


def get(name: str) -> type[ConvOperator]:
    """The operator class registered as ``name``; an unknown name raises KeyError listing the known ones."""
    try:
        return _OPERATORS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r} (known: {', '.join(names())})") from None


def names() -> list[str]:
    return list(_OPERATORS)
