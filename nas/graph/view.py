"""A networkx view of a captured graph, and the enumeration of its conv nodes.

Node keys are module paths for ``call_module`` nodes (``layer1.0.conv1``; a module called twice gets
``layer1.0.conv1#2``) and fx node names otherwise. Attributes: ``kind`` (conv, linear, norm, act, pool, add, mul,
cat, input, output, other), ``op`` (fx op), ``target``, ``module_type``, ``shape`` (output), ``channels`` and,
for convs, ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``groups``, ``dilation``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from operators import ConvOperator, ConvSpec


@dataclass(frozen=True)
class ConvNode:
    """A conv module of a captured graph: its path, geometry and shapes."""

    name: str
    spec: ConvSpec
    module_type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def is_depthwise(self) -> bool:
        return self.spec.is_depthwise


def node_keys(module: fx.GraphModule) -> dict[fx.Node, str]:
    """The view's key of every fx node (module path for call_module nodes)."""
    keys: dict[fx.Node, str] = {}
    seen: dict[str, int] = {}
    for node in module.graph.nodes:
        if node.op == "call_module":
            count = seen.get(node.target, 0) + 1
            seen[node.target] = count
            keys[node] = node.target if count == 1 else f"{node.target}#{count}"
        else:
            keys[node] = node.name
    return keys


_KIND_BY_MODULE: tuple[tuple[type, str], ...] = (
    (nn.Conv2d, "conv"),
    (ConvOperator, "conv"),
    (nn.Linear, "linear"),
    (nn.modules.batchnorm._NormBase, "norm"),
    (nn.GroupNorm, "norm"),
    (nn.LayerNorm, "norm"),
    (nn.modules.pooling._MaxPoolNd, "pool"),
    (nn.modules.pooling._AvgPoolNd, "pool"),
    (nn.modules.pooling._AdaptiveAvgPoolNd, "pool"),
    (nn.modules.pooling._AdaptiveMaxPoolNd, "pool"),
    (nn.ReLU, "act"),
    (nn.ReLU6, "act"),
    (nn.SiLU, "act"),
    (nn.GELU, "act"),
    (nn.Hardswish, "act"),
    (nn.Hardsigmoid, "act"),
    (nn.Sigmoid, "act"),
    (nn.Tanh, "act"),
    (nn.LeakyReLU, "act"),
    (nn.Dropout, "dropout"),
    (nn.Identity, "identity"),
    (nn.Flatten, "reshape"),
)
_KIND_BY_FUNCTION: dict[Any, str] = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    operator.sub: "add",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    torch.cat: "cat",
    torch.concat: "cat",
    F.conv2d: "conv",
    F.linear: "linear",
    torch.flatten: "reshape",
    torch.reshape: "reshape",
    torch.transpose: "reshape",
    F.relu: "act",
    F.silu: "act",
    F.hardswish: "act",
    F.hardsigmoid: "act",
    torch.sigmoid: "act",
    F.gelu: "act",
    F.adaptive_avg_pool2d: "pool",
    F.max_pool2d: "pool",
    F.avg_pool2d: "pool",
    torch.mean: "pool",
}
_KIND_BY_METHOD = {
    "add": "add",
    "add_": "add",
    "mul": "mul",
    "mul_": "mul",
    "view": "reshape",
    "reshape": "reshape",
    "flatten": "reshape",
    "transpose": "reshape",
    "permute": "reshape",
    "mean": "pool",
    "relu": "act",
    "relu_": "act",
    "sigmoid": "act",
}


def node_kind(node: fx.Node, module: nn.Module | None) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module" and module is not None:
        for cls, kind in _KIND_BY_MODULE:
            if isinstance(module, cls):
                return kind
        return "other"
    if node.op == "call_function":
        return _KIND_BY_FUNCTION.get(node.target, "other")
    if node.op == "call_method":
        return _KIND_BY_METHOD.get(node.target, "other")
    return "other"


def conv_spec_of(module: nn.Module) -> ConvSpec | None:
    if isinstance(module, ConvOperator):
        return module.spec
    if isinstance(module, nn.Conv2d):
        return ConvSpec.from_conv(module)
    return None


def _input_shape(node: fx.Node) -> tuple[int, ...]:
    first = node.args[0] if node.args else None
    shape = first.meta.get("shape") if isinstance(first, fx.Node) else None
    return tuple(shape) if isinstance(shape, tuple) else ()


def _shape(node: fx.Node) -> Any:
    if "shape" not in node.meta:
        raise ValueError("shapes are not propagated: call nas.graph.capture (or propagate_shapes) first")
    return node.meta["shape"]


def iter_conv_nodes(module: fx.GraphModule) -> Iterator[tuple[fx.Node, ConvNode]]:
    keys = node_keys(module)
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        submodule = module.get_submodule(node.target)
        spec = conv_spec_of(submodule)
        if spec is None:
            continue
        yield (
            node,
            ConvNode(keys[node], spec, type(submodule).__name__, _input_shape(node), tuple(_shape(node))),
        )


def conv_nodes(module: fx.GraphModule) -> list[ConvNode]:
    """Every conv module node (nn.Conv2d or an operator) with its arguments and shapes, in graph order."""
    return [conv for _, conv in iter_conv_nodes(module)]


def graph_view(module: fx.GraphModule) -> nx.DiGraph:
    """A networkx DiGraph of the captured graph with shape and conv attributes on the nodes."""
    keys = node_keys(module)
    graph = nx.DiGraph()
    for node in module.graph.nodes:
        submodule = module.get_submodule(node.target) if node.op == "call_module" else None
        shape = node.meta.get("shape")
        attrs: dict[str, Any] = dict(
            kind=node_kind(node, submodule),
            op=node.op,
            target=node.target
            if isinstance(node.target, str)
            else getattr(node.target, "__name__", str(node.target)),
            module_type=type(submodule).__name__ if submodule is not None else None,
            shape=shape,
            channels=shape[1] if isinstance(shape, tuple) and len(shape) >= 2 else None,
            fx_name=node.name,
        )
        spec = conv_spec_of(submodule) if submodule is not None else None
        if spec is not None:
            attrs.update(
                in_channels=spec.in_channels,
                out_channels=spec.out_channels,
                kernel_size=spec.kernel_size,
                stride=spec.stride,
                dilation=spec.dilation,
                groups=spec.groups,
            )
        graph.add_node(keys[node], **attrs)
        for source in node.all_input_nodes:
            graph.add_edge(keys[source], keys[node])
    return graph
