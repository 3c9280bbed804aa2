"""Channel groups of a captured graph: which channel dimensions must stay equal (or proportional) when widths scale.

Every tensor axis whose size depends on channels gets an ``Expr`` over atoms (``channel_algebra``). Walking the
fx graph in order, each op adds its constraints:
- convs and linears start new free atoms (their output channels); a depthwise conv keeps its input's channels
  (times its multiplier); a grouped conv with as many outputs as inputs ties them (its group width is rescaled);
- residual adds, gates (``x * sigmoid(se(x))``), norms, activations, pooling tie or pass channels through;
- concatenations sum their inputs' channels, chunks divide them, reshapes and permutes move them between axes
  (a channel shuffle splits them over two axes and merges them back);
- parameters read with ``get_attr`` (a layer scale, a functional norm's weight) follow whatever they meet.
The input's channels and every output are fixed, and so is anything an op the analysis does not understand
touches (with the reason, for the user). Function and method rules live in ``channel_ops``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
from torch import nn

from operators import ConvOperator

from ..graph.shapes import MODULE_RULES
from ..graph.view import node_keys
from . import channel_ops
from .channel_algebra import Axes, ChannelAlgebra, Expr, Kind, Value

NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class ConvPlan:
    """How a conv's ``groups`` follow its channels: ``dense`` (1), ``depthwise`` (= input channels), ``grouped``
    (input channels / rescaled group width ``group_width``), ``fixed`` (the same number of groups)."""

    kind: str
    group_width: int = 1


@dataclass
class ChannelAnalysis:
    """The result: the algebra, every node's axes, conv group plans, literal arguments to rewrite."""

    module: fx.GraphModule
    algebra: ChannelAlgebra = field(default_factory=ChannelAlgebra)
    values: dict[fx.Node, Value] = field(default_factory=dict)
    conv_plans: dict[str, ConvPlan] = field(default_factory=dict)  # module target -> plan
    literal_shapes: dict[fx.Node, tuple[int, Axes]] = field(default_factory=dict)  # node -> (arg index, axes)
    keys: dict[fx.Node, str] = field(default_factory=dict)


class ChannelPropagator:
    """Walks a captured graph (shapes propagated) and builds a ChannelAnalysis."""

    def __init__(self, module: fx.GraphModule, opaque: frozenset[str] = frozenset()) -> None:
        self.module = module
        self.result = ChannelAnalysis(module, keys=node_keys(module))
        self.algebra = self.result.algebra
        self.opaque_nodes = opaque
        self.first_call: dict[str, list[Expr | None]] = {}

    # -- helpers -------------------------------------------------------------------------------------------
    def key(self, node: fx.Node) -> str:
        return self.result.keys[node]

    def value(self, arg: Any) -> Value:
        return self.result.values.get(arg) if isinstance(arg, fx.Node) else None

    @staticmethod
    def shape(arg: Any) -> tuple[int, ...] | None:
        shape = arg.meta.get("shape") if isinstance(arg, fx.Node) else None
        return shape if isinstance(shape, tuple) else None

    def axes(self, arg: Any) -> Axes:
        """The axes of a tensor argument (untracked axes are None)."""
        shape = self.shape(arg)
        value = self.value(arg)
        if shape is None:
            return ()
        return value if isinstance(value, tuple) and len(value) == len(shape) else (None,) * len(shape)

    def untracked(self, node: fx.Node) -> Value:
        shape = node.meta.get("shape")
        if isinstance(shape, tuple):
            return (None,) * len(shape)
        if isinstance(shape, list):
            return [(None,) * len(s) for s in shape]
        return None

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        return [arg for arg in _flat_nodes((node.args, node.kwargs)) if self.shape(arg) is not None]

    def fix_value(self, value: Value, reason: str) -> None:
        for axes in value if isinstance(value, list) else [value] if value else []:
            for expr in axes or ():
                self.algebra.fix(expr, reason)

    def opaque(self, node: fx.Node, reason: str) -> Value:
        """An op the analysis does not understand: its inputs' channels keep their size; outputs are untracked."""
        why = f"{self.key(node)} ({_label(node)}): {reason}"
        for arg in _flat_nodes((node.args, node.kwargs)):
            self.fix_value(self.value(arg), why)
        return self.untracked(node)

    def free(self, size: int, node: fx.Node) -> Expr:
        return Expr.atom(self.algebra.new_atom(size, Kind.FREE, self.key(node)))

    def same_rank(self, node: fx.Node, source: fx.Node) -> Value:
        """Output axes equal the input's where sizes agree (pooling changes only spatial axes); an op that changes
        a channel axis's size is opaque."""
        shape, axes = self.shape(node), self.axes(source)
        if shape is None or len(shape) != len(axes):
            return self.opaque(node, "changes the rank of a channel tensor")
        out = []
        for size, old_size, expr in zip(shape, self.shape(source), axes, strict=True):
            if expr is not None and size != old_size:
                return self.opaque(node, "changes the size of a channel axis")
            out.append(expr if size == old_size else None)
        return tuple(out)

    def tie_reuse(self, node: fx.Node, exprs: list[Expr | None]) -> None:
        """A module called more than once: its channel-dependent sizes must agree across calls."""
        first = self.first_call.setdefault(node.target, exprs)
        for a, b in zip(first, exprs, strict=True):
            if a is not None and b is not None:
                self.algebra.unify(a, b, f"{self.key(node)}: module called with different channels")
            elif (a is None) != (b is None):
                self.fix_value((a, b), f"{self.key(node)}: module called with fixed and scaled channels")

    # -- the walk ------------------------------------------------------------------------------------------
    def run(self) -> ChannelAnalysis:
        for node in self.module.graph.nodes:
            self.result.values[node] = self.visit(node)
        return self.result

    def visit(self, node: fx.Node) -> Value:
        if node.name in self.opaque_nodes:
            return self.opaque(node, "its rebuild failed, so it is left as it was")
        if node.op == "placeholder":
            shape = self.shape(node)
            if shape is None or len(shape) < 2:
                return self.untracked(node)
            atom = self.algebra.new_atom(shape[1], Kind.FIXED, f"input {node.name}: input channels are kept")
            return (None, Expr.atom(atom), *(None,) * (len(shape) - 2))
        if node.op == "get_attr":
            shape = self.shape(node)
            if shape is None:
                return None
            kind, origin = Kind.FOLLOWER, f"parameter {node.target}"
            return tuple(Expr.atom(self.algebra.new_atom(s, kind, origin)) if s > 1 else None for s in shape)
        if node.op == "output":
            for arg in _flat_nodes(node.args):
                self.fix_value(self.value(arg), "the model's outputs are kept")
            return None
        if node.op == "call_module":
            return self.visit_module(node, self.module.get_submodule(node.target))
        return channel_ops.visit(self, node)

    def visit_module(self, node: fx.Node, module: nn.Module) -> Value:
        if isinstance(module, ConvOperator):
            return self.opaque(node, "an operator (scale the model before rewriting it)")
        inputs = self.tensor_args(node)
        if len(inputs) != 1:
            return self.opaque(node, "a module with several tensor inputs")
        source = inputs[0]
        axes = self.axes(source)
        if type(module) in CONVS:
            return self.conv(node, module, axes)
        if isinstance(module, nn.Linear):
            out = self.free(module.out_features, node)
            self.tie_reuse(node, [axes[-1], out])
            return (*axes[:-1], out)
        if isinstance(module, (*NORMS, nn.GroupNorm)) or (
            isinstance(module, nn.PReLU) and module.num_parameters > 1
        ):
            self.tie_reuse(node, [axes[1]])
            if isinstance(module, nn.GroupNorm) and module.num_groups not in (1, module.num_channels):
                self.algebra.require(
                    axes[1] or Expr(), module.num_groups, f"{self.key(node)}: GroupNorm groups"
                )
            return axes
        if isinstance(module, nn.LayerNorm):
            count = len(module.normalized_shape)
            self.tie_reuse(node, list(axes[-count:]))
            return axes
        if isinstance(module, nn.Flatten):
            return channel_ops.reshape(self, node, source, None)
        if isinstance(module, nn.ChannelShuffle):
            self.algebra.require(
                axes[1] or Expr(), module.groups, f"{self.key(node)}: channel shuffle groups"
            )
            return axes
        known = any(cls in MODULE_RULES for cls in type(module).__mro__)
        stateless = not any(True for _ in module.parameters()) and not any(True for _ in module.buffers())
        if known or stateless:
            return self.same_rank(node, source)
        return self.opaque(node, f"unknown module type {type(module).__name__}")

    def conv(self, node: fx.Node, module: nn.Module, axes: Axes) -> Value:
        """Dense: new atom. Depthwise (groups = inputs): the input's channels times the multiplier. Grouped with
        equal in and out channels: tied, group width rescaled. Other grouped convs: same number of groups."""
        in_channels, out_channels, groups = module.in_channels, module.out_channels, module.groups
        source = axes[1] if len(axes) > 1 else None
        key = self.key(node)
        if groups == 1:
            out, plan = self.free(out_channels, node), ConvPlan("dense")
        elif groups == in_channels and out_channels % in_channels == 0:
            out = source.times(out_channels // in_channels) if source is not None else None
            plan = ConvPlan("depthwise")
        elif in_channels == out_channels:
            out, plan = source, ConvPlan("grouped", in_channels // groups)
        else:
            out, plan = self.free(out_channels, node), ConvPlan("fixed")
            for expr in (source, out):
                self.algebra.require(expr or Expr(), groups, f"{key}: grouped conv")
        self.result.conv_plans.setdefault(node.target, plan)
        self.tie_reuse(node, [source, out])
        return (axes[0], out, *axes[2:])


def _flat_nodes(value: Any) -> Iterator[fx.Node]:
    if isinstance(value, fx.Node):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flat_nodes(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flat_nodes(item)


def _label(node: fx.Node) -> str:
    if node.op == "call_module":
        return "module"
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def analyze_channels(module: fx.GraphModule, opaque: frozenset[str] = frozenset()) -> ChannelAnalysis:
    """The channel groups of a captured graph (``nas.graph.capture``); ``opaque`` names fx nodes to treat as
    not understood (their channels kept)."""
    return ChannelPropagator(module, opaque).run()
