"""A small registry of named things, and the operator registry built on it: ``register``, ``get``, ``names``.

``Registry`` is the one implementation behind every registry of the project (operators here; model families in
``search_spaces``, datasets in ``nas.data``, family scalers in ``nas.scaling``): ``register(name, item)`` refuses a
name already taken, ``get(name)`` raises ``UnknownName`` (a ``KeyError``) whose message lists the known names,
``names()`` lists them in registration order. It imports nothing, so every package may use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .base import ConvOperator

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no item is registered under; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Items by unique name. ``kind`` names them in messages ("operator", "dataset"); ``hint`` is added to the
    list of known names when a lookup fails (another way to name one, say)."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind, self.hint = kind, hint
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` as ``name`` and return it; an empty or taken name raises ValueError."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """The item registered as ``name``; an unknown name raises ``UnknownName`` listing the known ones."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = ", ".join(self._items) or "none"
            raise UnknownName(f"unknown {self.kind} {name!r} (known: {known}{self.hint})") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


OPERATORS: Registry[type[ConvOperator]] = Registry("operator")


def register(cls: type[ConvOperator]) -> type[ConvOperator]:
    """Class decorator adding an operator under its ``name``; a missing or duplicate name raises ValueError."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in OPERATORS:
        raise ValueError(f"operator {cls.name!r} is already registered ({OPERATORS.get(cls.name).__name__})")
    return OPERATORS.register(cls.name, cls)


def get(name: str) -> type[ConvOperator]:
    """The operator class registered as ``name``; an unknown name raises KeyError listing the known ones."""
    return OPERATORS.get(name)


def names() -> list[str]:
    return OPERATORS.names()
