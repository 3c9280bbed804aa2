"""Load a space file: ``yaml.safe_load`` -> overrides -> validation -> ``Space``.

Every problem is one ``SpaceError`` line: ``FILE:LINE: key.path: problem``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

import operators

from ..errors import NasError
from .convert import SchemaError, convert, from_mapping, join
from .schema import Constraint, Objective, OperatorChoice, OperatorsSection, ParamDomain, Space


class SpaceError(NasError):
    """A problem in a space file, naming the file, the key and (where known) the line."""


def builtin_spaces() -> list[str]:
    return sorted(p.name for p in resources.files("search_spaces").iterdir() if p.name.endswith(".yaml"))


def resolve_space_path(name: str) -> Path:
    """A path as given, else a built-in space of that name (``convops.yaml`` or ``convops``)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (name, f"{name}.yaml"):
        builtin = resources.files("search_spaces").joinpath(candidate)
        if "/" not in candidate and builtin.is_file():
            return Path(str(builtin))
    raise SpaceError(
        f"{name}: no such file and no built-in space of that name (built-in: {', '.join(builtin_spaces())})"
    )


def _line_map(text: str) -> dict[str, int]:
    """key path -> 1-based line of its value, from the YAML node tree."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = join(path, key_node.value)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = join(path, index)
                lines[child] = item.start_mark.line + 1
                walk(item, child)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """``train.epochs=1`` sets data["train"]["epochs"] = 1 (the value is read as YAML; list items by index)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise SpaceError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. --set train.epochs=1")
    parts = key.strip().split(".")
    target: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise SpaceError(f"--set {assignment!r}: {where}: no such list item")
            if last:
                target[int(part)] = yaml.safe_load(value) if value.strip() else None
            else:
                target = target[int(part)]
            continue
        if not isinstance(target, dict):
            raise SpaceError(
                f"--set {assignment!r}: {'.'.join(parts[:depth]) or 'the space'} is not a section"
            )
        if last:
            target[part] = yaml.safe_load(value) if value.strip() else None
        else:
            if target.get(part) is None:
                target[part] = {}
            target = target[part]


# -- section normalizers: the YAML's friendly forms -> the dataclasses' mappings ----------------------------
def _param_domain(value: Any, path: str) -> ParamDomain:
    if isinstance(value, Mapping):
        if "choices" in value:
            choices = convert(tuple[Any, ...], value["choices"], join(path, "choices"))
            if not choices:
                raise SchemaError(join(path, "choices"), "an empty list of choices")
            return ParamDomain(choices=choices)
        data = dict(value)
        return from_mapping(ParamDomain, data, path)
    if isinstance(value, list):
        if not value:
            raise SchemaError(path, "an empty list of choices")
        return ParamDomain(choices=tuple(value))
    return ParamDomain(fixed=value)


def _operator_choices(value: Any, path: str) -> tuple[OperatorChoice, ...]:
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, Mapping) or not value:
        raise SchemaError(path, "expected a mapping of operator name -> parameters (or a list of names)")
    choices = []
    for name, params in value.items():
        op_path = join(path, name)
        try:
            cls = operators.get(name)
        except KeyError as error:
            raise SchemaError(op_path, str(error).strip("'\"")) from None
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise SchemaError(op_path, "expected a mapping of parameter -> value, range or choices")
        known = {p.name: p for p in cls.params}
        domains = {}
        for key, raw in params.items():
            if key not in known:
                raise SchemaError(
                    join(op_path, key),
                    f"operator {name!r} has no parameter {key!r} (known: {', '.join(known) or 'none'})",
                )
            domains[key] = _check_domain(
                known[key], _param_domain(raw, join(op_path, key)), join(op_path, key)
            )
        choices.append(OperatorChoice(name, domains))
    return tuple(choices)


def _check_domain(spec: operators.ParamSpec, domain: ParamDomain, path: str) -> ParamDomain:
    """Every value the domain allows must be valid for the operator."""
    try:
        if domain.kind == "fixed":
            return ParamDomain(fixed=spec.validate(domain.fixed))
        if domain.kind == "choices":
            return ParamDomain(choices=tuple(spec.validate(v) for v in domain.choices))
        if spec.kind not in ("int", "float"):
            raise ValueError(f"{spec.name} is {spec.kind}: give a value or a list of choices, not a range")
        spec.validate(domain.low)
        spec.validate(domain.high)
        if domain.low > domain.high:
            raise ValueError(f"low {domain.low} > high {domain.high}")
        if domain.step is not None:
            if not domain.step > 0:
                raise ValueError(f"step must be > 0, got {domain.step}")
            if spec.kind == "int" and not float(domain.step).is_integer():
                raise ValueError(f"{spec.name} is an integer: step must be a whole number, got {domain.step}")
        if domain.log and domain.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {domain.low}")
    except ValueError as error:
        raise SchemaError(path, str(error)) from None
    return domain


def _objectives(value: Any, path: str) -> tuple[Objective, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for index, item in enumerate(items):
        item_path = join(path, index)
        if isinstance(item, str):
            item = {"metric": item}
        elif isinstance(item, Mapping) and len(item) == 1 and "metric" not in item:
            ((metric, direction),) = item.items()
            item = {"metric": metric, "direction": direction}
        out.append(from_mapping(Objective, item, item_path))
    return tuple(out)


def _constraints(value: Any, path: str) -> tuple[Constraint, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        for key, bounds in value.items():
            if bounds is not None and not isinstance(bounds, Mapping):
                raise SchemaError(join(path, key), f"expected {{min, max}}, got {bounds!r}")
        return tuple(
            from_mapping(Constraint, {"metric": k, **(v or {})}, join(path, k)) for k, v in value.items()
        )
    if isinstance(value, list):
        return tuple(from_mapping(Constraint, item, join(path, i)) for i, item in enumerate(value))
    raise SchemaError(path, "expected a mapping metric -> {min, max}")


def build_space(data: Mapping[str, Any], source: str = "") -> Space:
    """Validate plain data into a Space (SchemaError on the first problem)."""
    if not isinstance(data, Mapping):
        raise SchemaError("", "a space file must be a mapping of sections")
    original = data
    data = copy.deepcopy(dict(data))
    operators_section = dict(data.get("operators") or {})
    if "choices" in operators_section:
        choices = _operator_choices(operators_section.pop("choices"), "operators.choices")
    else:
        choices = None
    objectives = _objectives(data.pop("objectives"), "objectives") if "objectives" in data else None
    constraints = _constraints(data.pop("constraints", None), "constraints")
    data.pop("operators", None)
    model = data.get("model")
    if isinstance(model, str):
        data["model"] = {"ref": model}
    space = from_mapping(Space, {**data, "source": source}, "")
    raw = copy.deepcopy(dict(original))
    ops = from_mapping(OperatorsSection, operators_section, "operators")
    if choices is not None:
        ops = OperatorsSection(ops.targets, ops.granularity, choices)
    kwargs = dict(operators=ops, constraints=constraints, raw=raw)
    if objectives is not None:
        kwargs["objectives"] = objectives
    try:
        return dataclasses.replace(space, **kwargs)
    except SchemaError:
        raise
    except ValueError as error:
        raise SchemaError("", str(error)) from None


MAX_FILE_BYTES = 1_000_000  # a space file is a page of settings; anything larger is not one
MAX_NODES = 100_000  # values after YAML aliases are expanded (an alias bomb expands exponentially)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(data: Any, where: str) -> None:
    """Count the values as Python will walk them (aliases expanded); stop at ``MAX_NODES``."""
    stack, count = [data], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise SpaceError(
                f"{where}: more than {MAX_NODES:,} values once YAML aliases are expanded; not a space file"
            )
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def read_space_data(path: Path) -> tuple[dict[str, Any], str]:
    """The space file's data and text: size-limited, UTF-8, valid YAML with unique keys, a mapping."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpaceError(
                f"{path}: {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit of a space file"
            )
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as error:
        raise SpaceError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpaceError(f"{where}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: a space file must be a mapping of sections")
    _check_expanded_size(data, str(path))
    return data, text


def load_space(name: str, overrides: Sequence[str] = ()) -> Space:
    """Read, override (``--set key.path=value``) and validate a space file."""
    path = resolve_space_path(name)
    data, text = read_space_data(path)
    data = copy.deepcopy(data)
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return build_space(data, str(path))
    except SchemaError as error:
        line = _line_map(text).get(error.path)
        where = f"{path}:{line}" if line else str(path)
        key = error.path or "(top level)"
        raise SpaceError(f"{where}: {key}: {error.problem}") from None
