"""Candidates: what the sampler proposes, and how a space turns one into a model.

A ``Candidate`` holds a scale factor and, per conv group, an operator with its parameters. Groups come from the
space's ``operators.granularity``: ``global`` (one group), ``stage`` (convs grouped by output resolution, in graph
order: ``stage1``, ``stage2``...), or ``node`` (one group per target conv, named by module path).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

import operators

from .errors import NasError
from .graph import ConvNode, Ineligible, Selector, conv_nodes, rewrite
from .graph import capture as capture_graph
from .graph.capture import resolve_leaf_types
from .graph.rewrite import RewriteResult
from .models import DEFAULT_INPUT_SHAPE, BuiltModel, build_model
from .space.schema import Space, TargetSection


@dataclass(frozen=True)
class OperatorAssignment:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    scale: float = 1.0
    operators: Mapping[str, OperatorAssignment] = field(default_factory=dict)  # group -> operator

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "operators": {g: {"name": a.name, "params": dict(a.params)} for g, a in self.operators.items()},
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Candidate:
        ops = {
            g: OperatorAssignment(a["name"], dict(a.get("params", {})))
            for g, a in data.get("operators", {}).items()
        }
        return Candidate(float(data.get("scale", 1.0)), ops)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def operator_mix(self) -> str:
        """'stage1=weighted stage2=conv ...' for tables."""
        return " ".join(f"{g}={a.name}" for g, a in self.operators.items())


def is_target(node: ConvNode, targets: TargetSection) -> bool:
    spec = node.spec
    if not any(fnmatch.fnmatchcase(node.name, p) for p in targets.names):
        return False
    if any(fnmatch.fnmatchcase(node.name, p) for p in targets.exclude):
        return False
    if targets.kernel_size and not (
        spec.kernel_size[0] == spec.kernel_size[1] and spec.kernel_size[0] in targets.kernel_size
    ):
        return False
    if min(spec.kernel_size) < targets.min_kernel_size:
        return False
    if targets.stride and spec.stride[0] not in targets.stride:
        return False
    return targets.depthwise is None or spec.is_depthwise == targets.depthwise


def conv_groups(module: fx.GraphModule, space: Space) -> dict[str, list[ConvNode]]:
    """Target convs by group, in graph order."""
    targets = [n for n in conv_nodes(module) if is_target(n, space.operators.targets)]
    granularity = space.operators.granularity
    if granularity == "global":
        return {"all": targets} if targets else {}
    if granularity == "node":
        return {n.name: [n] for n in targets}
    groups: dict[str, list[ConvNode]] = {}
    stage_of: dict[tuple[int, ...], str] = {}
    for node in targets:
        resolution = tuple(node.output_shape[2:])
        name = stage_of.setdefault(resolution, f"stage{len(stage_of) + 1}")
        groups.setdefault(name, []).append(node)
    return groups


@dataclass
class BuiltCandidate:
    module: fx.GraphModule
    input_shape: tuple[int, ...]
    base: BuiltModel
    rewrite: RewriteResult | None
    groups: dict[str, list[str]]
    scale_notes: list[str] = field(default_factory=list)
    architecture: dict[str, Any] = field(default_factory=dict)


def _base_model(space: Space, data_input_shape: tuple[int, ...] | None) -> tuple[BuiltModel, tuple[int, ...]]:
    built = build_model(space.model.ref, dict(space.model.kwargs))
    shape = tuple(space.model.input or built.input_shape or data_input_shape or DEFAULT_INPUT_SHAPE)
    return built, shape


def build_base(
    space: Space, data_input_shape: tuple[int, ...] | None = None
) -> tuple[BuiltModel, fx.GraphModule, tuple[int, ...]]:
    """The space's model, captured at its input shape."""
    built, shape = _base_model(space, data_input_shape)
    module = capture_graph(built.module, shape, leaf_modules=resolve_leaf_types(space.model.leaf_modules))
    return built, module, shape


def build_candidate(
    space: Space, candidate: Candidate, seed: int, data_input_shape: tuple[int, ...] | None = None
) -> BuiltCandidate:
    """Build -> scale -> capture -> rewrite, deterministically for ``seed``."""
    torch.manual_seed(seed)
    built, shape = _base_model(space, data_input_shape)
    leaf_types = resolve_leaf_types(space.model.leaf_modules)
    model, notes, architecture = built.module, [], {}
    if candidate.scale != 1.0:
        from .scaling import scale_model

        scaled = scale_model(
            built, candidate.scale, space.scaling.rule, shape, seed=seed, leaf_modules=leaf_types
        )
        model, shape, notes = scaled.module, tuple(scaled.input_shape), list(scaled.notes)
        architecture = scaled.after.as_dict()
    module = capture_graph(model, shape, leaf_modules=leaf_types)
    groups = conv_groups(module, space)
    group_of = {node.name: group for group, nodes in groups.items() for node in nodes}
    result = None
    chosen = {g: a for g, a in candidate.operators.items() if a.name != "conv"}
    if chosen:

        def selected(node: ConvNode) -> bool:
            return group_of.get(node.name) in chosen

        def build(node: ConvNode, conv: torch.nn.Module) -> torch.nn.Module:
            assignment = chosen[group_of[node.name]]
            cls = operators.get(assignment.name)
            reason = cls.eligibility(node.spec, **assignment.params)
            if reason is not None:
                raise Ineligible(reason)
            return cls.from_conv(conv, **assignment.params)

        result = rewrite(module, build, Selector(predicate=selected))
    return BuiltCandidate(
        module,
        shape,
        built,
        result,
        {g: [n.name for n in nodes] for g, nodes in groups.items()},
        notes,
        architecture,
    )


def eligible_operators(space: Space, groups: dict[str, list[ConvNode]]) -> dict[str, list[str]]:
    """Per group, the space's operator choices that can replace at least one of its convs."""
    out: dict[str, list[str]] = {}
    for group, nodes in groups.items():
        names = []
        for choice in space.operators.choices:
            cls = operators.get(choice.name)
            params = {k: d.fixed for k, d in choice.params.items() if d.kind == "fixed"}
            if any(cls.eligibility(node.spec, **params) is None for node in nodes):
                names.append(choice.name)
        if not names:
            raise NasError(f"no operator of the space can replace any conv of group {group!r}")
        out[group] = names
    return out
