"""Plain YAML data -> frozen dataclasses, checked against the dataclasses' type hints.

Unknown keys, missing required keys and wrong types raise ``SchemaError(path, problem)``; ``path`` is the key
path (``train.epochs``) so the loader can add the file name and line number.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union


class SchemaError(ValueError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None)) + " or null"
    if origin in (tuple, list):
        return "a list"
    if origin is not None and issubclass(origin, Mapping) or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def convert(hint: Any, value: Any, path: str) -> Any:
    """``value`` checked and converted to ``hint``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, path)
            except SchemaError as error:
                errors.append(error)
        if len(errors) == 1:  # ``X | None``: X's own complaint names the key and the problem
            raise errors[0]
        raise SchemaError(path, f"expected {_type_name(hint)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise SchemaError(
            path, f"expected one of {', '.join(map(repr, typing.get_args(hint)))}, got {value!r}"
        )
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, path)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise SchemaError(path, f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(args[0], v, join(path, i)) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise SchemaError(path, f"expected a list of {len(args)} items, got {len(value)}")
        return (
            tuple(convert(a, v, join(path, i)) for i, (a, v) in enumerate(zip(args, value)))
            if args
            else tuple(value)
        )
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise SchemaError(path, f"expected a mapping, got {value!r}")
        args = typing.get_args(hint)
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): convert(value_hint, v, join(path, k)) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SchemaError(path, f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SchemaError(path, f"expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise SchemaError(path, f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise SchemaError(path, f"expected a string, got {value!r}")
    raise TypeError(f"unsupported schema type {hint!r} at {path}")


def from_mapping(cls: type, data: Any, path: str = "") -> Any:
    """An instance of dataclass ``cls`` from a mapping; every key must be a field."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SchemaError(path, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise SchemaError(join(path, unknown[0]), f"unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SchemaError(join(path, name), "required key is missing")
    try:
        return cls(**kwargs)
    except SchemaError as error:
        raise SchemaError(join(path, error.path), error.problem) from None
    except ValueError as error:
        raise SchemaError(path, str(error)) from None
