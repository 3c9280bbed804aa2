"""Rewrite API: replace selected conv nodes of a captured graph by modules built from their arguments.

    result = rewrite(gm, build=lambda node, conv: MyConv.from_conv(conv), select=Selector(names=("layer*.conv2",)))
    result.rewritten  # {"layer1.0.conv2": "MyConv", ...}
    result.skipped    # {"conv1": "why it was not replaced", ...}

Rewriting works in place on the GraphModule (swapping submodules; the graph itself is unchanged), then
propagates shapes again and checks that every rewritten node keeps its output shape.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
from torch import nn

import operators

from ..errors import RewriteError
from .shapes import propagate_shapes
from .view import ConvNode, iter_conv_nodes


class Ineligible(Exception):
    """Raised by a builder to skip a node; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Selector:
    """Which conv nodes to rewrite: all given criteria must hold (an empty selector selects every conv).

    ``names``: fnmatch globs over module paths (any may match); ``types``: module types (any);
    ``predicate``: a function of the ConvNode (kernel size, groups, stride...).
    """

    names: tuple[str, ...] = ()
    types: tuple[type, ...] = ()
    predicate: Callable[[ConvNode], bool] | None = None

    def matches(self, node: ConvNode, module: nn.Module) -> bool:
        if self.names and not any(fnmatch.fnmatchcase(node.name, pattern) for pattern in self.names):
            return False
        if self.types and not isinstance(module, self.types):
            return False
        return self.predicate is None or bool(self.predicate(node))


@dataclass
class RewriteResult:
    module: fx.GraphModule
    rewritten: dict[str, str] = field(default_factory=dict)  # node -> new module type
    skipped: dict[str, str] = field(default_factory=dict)  # node -> reason


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, new)


def rewrite(
    module: fx.GraphModule,
    build: Callable[[ConvNode, nn.Module], nn.Module],
    select: Selector = Selector(),
) -> RewriteResult:
    """Replace every selected conv node's module by ``build(node, conv_module)``, in place.

    ``build`` raises ``Ineligible(reason)`` to skip a node. Raises RewriteError naming the node when a new
    module changes a node's output shape.
    """
    if "input_shape" not in module.meta:
        raise ValueError("rewrite needs a captured module: use nas.graph.capture(model, input_shape) first")
    result = RewriteResult(module)
    expected: dict[fx.Node, tuple[str, tuple[int, ...]]] = {}
    for node, conv in list(iter_conv_nodes(module)):
        old = module.get_submodule(node.target)
        if not select.matches(conv, old):
            continue
        try:
            new = build(conv, old)
        except Ineligible as reason:
            result.skipped[conv.name] = str(reason)
            continue
        _set_submodule(module, node.target, new)
        result.rewritten[conv.name] = type(new).__name__
        expected[node] = (conv.name, conv.output_shape)
    if expected:
        _recheck_shapes(module, expected)
    return result


def _recheck_shapes(module: fx.GraphModule, expected: dict[fx.Node, tuple[str, tuple[int, ...]]]) -> None:
    shape = (module.meta.get("batch_size", 1), *module.meta["input_shape"])
    try:
        propagate_shapes(module, shape)
    except Exception as error:
        raise RewriteError(f"the rewritten graph no longer propagates shapes: {error}") from error
    for node, (name, old_shape) in expected.items():
        new_shape = node.meta.get("shape")
        if new_shape != old_shape:
            raise RewriteError(
                f"node {name!r}: the new module's output shape {new_shape} differs from the conv's {old_shape}"
            )


def operator_builder(
    name: str, params: dict[str, Any] | None = None
) -> Callable[[ConvNode, nn.Module], nn.Module]:
    """A ``build`` function replacing convs by the registered operator ``name`` with ``params``.

    Unknown operators or parameters raise RewriteError naming them and the known ones; a conv the operator
    cannot replace is skipped with the operator's own reason.
    """
    try:
        cls = operators.get(name)
        checked = cls.validate_params(dict(params or {}))
    except (KeyError, ValueError) as error:
        raise RewriteError(str(error).strip("'\"")) from None

    def build(node: ConvNode, conv: nn.Module) -> nn.Module:
        if isinstance(conv, operators.ConvOperator):  # rewriting an operator starts from its deployed conv
            conv = conv.collapse()
        reason = cls.eligibility(node.spec, **checked)
        if reason is not None:
            raise Ineligible(reason)
        return cls.from_conv(conv, **checked)

    return build


def rewrite_with_operator(
    module: fx.GraphModule, name: str, params: dict[str, Any] | None = None, select: Selector = Selector()
) -> RewriteResult:
    """Replace every selected, eligible conv by operator ``name``."""
    return rewrite(module, operator_builder(name, params), select)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


_CONDITIONS: dict[str, Callable[[Any, Any], bool]] = {
    "kernel_size": lambda spec, value: spec.kernel_size == _pair(value),
    "stride": lambda spec, value: spec.stride == _pair(value),
    "groups": lambda spec, value: spec.groups == value,
    "depthwise": lambda spec, value: spec.is_depthwise == bool(value),
}


def selector(names: Sequence[str] = (), types: Sequence[type] = (), **conditions: Any) -> Selector:
    """A Selector from globs, types and simple conditions on the conv: ``kernel_size=3``, ``groups=1``,
    ``stride=1``, ``depthwise=True``."""
    unknown = set(conditions) - set(_CONDITIONS)
    if unknown:
        raise RewriteError(
            f"unknown selector condition {sorted(unknown)[0]!r} (known: {', '.join(_CONDITIONS)})"
        )

    def predicate(node: ConvNode) -> bool:
        return all(_CONDITIONS[key](node.spec, value) for key, value in conditions.items())

    return Selector(tuple(names), tuple(types), predicate if conditions else None)
