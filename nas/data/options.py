"""Dataset options: each dataset declares its options; unknown keys and wrong types are errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas.errors import DataError


@dataclass(frozen=True)
class Option:
    """One option of a dataset: default, accepted type(s), allowed values, lower bound, one-line help."""

    default: Any
    kind: type | tuple[type, ...]
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # bool is an int subclass; `size: true` is a mistake, not 1
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def parse_options(dataset: str, given: Mapping[str, Any], schema: Mapping[str, Option]) -> dict[str, Any]:
    """The options of ``dataset`` with defaults filled in; raises DataError naming the offending key."""
    unknown = [key for key in given if key not in schema]
    if unknown:
        known = ", ".join(schema) or "none"
        raise DataError(f"data {dataset!r}: unknown option {unknown[0]!r} (known: {known})")
    parsed: dict[str, Any] = {}
    for key, option in schema.items():
        value = given.get(key, option.default)
        parsed[key] = value
        if value is None and option.default is None:
            continue
        if not _type_ok(value, option.kind):
            raise DataError(
                f"data {dataset!r}: option {key!r} must be {_type_name(option.kind)}, got {value!r}"
            )
        if option.choices is not None and value not in option.choices:
            allowed = ", ".join(repr(choice) for choice in option.choices)
            raise DataError(f"data {dataset!r}: option {key!r} must be one of {allowed}, got {value!r}")
        if option.minimum is not None and value < option.minimum:
            raise DataError(f"data {dataset!r}: option {key!r} must be >= {option.minimum:g}, got {value!r}")
    return parsed
