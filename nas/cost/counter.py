"""The analytic cost model: flops, macs, acts and params of a captured graph, per node and in total.

Conventions (those of pycls and of "Fast and Accurate Model Scaling", Dollar et al. 2021; DESIGN.md):
- ``macs``: multiply-adds of convs, linears and matmuls. A conv's are (output elements) x (in/groups) x kh x kw;
  a linear's (output elements) x in_features; a matmul's (batch) x n x m x k.
- ``flops``: ``macs`` plus one addition per output element of a layer with a bias (never 2x macs).
- ``acts``: output elements of convs, linears and non-global pooling layers (global pooling, to 1x1, excluded).
- ``params``: parameters of the deployed model, operators counted as their collapsed conv;
  ``training_params`` beside it counts what training optimizes and stores.
Every count is per input batch of the captured graph (batch 1 unless captured otherwise). An op the counter
does not know is listed in ``unknown_ops``, never counted silently as zero.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from operators import ConvOperator, ConvSpec

from ..graph.shapes import (
    BROADCAST_FUNCTIONS,
    BROADCAST_METHODS,
    UNARY_FUNCTIONS,
    UNARY_METHODS,
    module_rule,
    qualified_name,
)
from ..graph.view import node_keys


@dataclass(frozen=True)
class NodeCost:
    name: str
    op: str  # module type or function name
    flops: int = 0
    macs: int = 0
    acts: int = 0


@dataclass
class CostReport:
    flops: int = 0
    macs: int = 0
    acts: int = 0
    params: int = 0
    training_params: int = 0
    nodes: list[NodeCost] = field(default_factory=list)
    unknown_ops: dict[str, int] = field(default_factory=dict)  # op -> number of nodes

    def totals(self) -> dict[str, int]:
        return dict(flops=self.flops, macs=self.macs, acts=self.acts, params=self.params)

    def by_name(self) -> dict[str, NodeCost]:
        return {n.name: n for n in self.nodes}


def _numel(shape: Any) -> int:
    return math.prod(shape) if isinstance(shape, tuple) else 0


# -- per-op formulas -----------------------------------------------------------------------------------------
def conv_cost(spec: ConvSpec, output_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(flops, macs, acts) of a 2-D conv producing ``output_shape``."""
    out = _numel(output_shape)
    macs = out * (spec.in_channels // spec.groups) * spec.kernel_size[0] * spec.kernel_size[1]
    return macs + (out if spec.bias else 0), macs, out


def linear_cost(in_features: int, has_bias: bool, output_shape: tuple[int, ...]) -> tuple[int, int, int]:
    out = _numel(output_shape)
    macs = out * in_features
    return macs + (out if has_bias else 0), macs, out


def pool_cost(output_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Pooling: no flops (pycls); its output counts as activations unless it is global (1x1)."""
    is_global = len(output_shape) >= 2 and all(s == 1 for s in output_shape[2:])
    return 0, 0, 0 if is_global else _numel(output_shape)


def matmul_cost(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], output_shape: tuple[int, ...]
) -> tuple[int, int, int]:
    """(flops, macs, acts=0) of a matmul: every output element costs the contracted size in multiply-adds."""
    inner = a_shape[-1] if len(a_shape) >= 1 else 1
    macs = _numel(output_shape) * inner
    return macs, macs, 0


ZERO = (0, 0, 0)


# -- module costs ------------------------------------------------------------------------------------------
def _conv_module(module: nn.Module, node: fx.Node) -> tuple[int, int, int]:
    spec = module.collapsed_spec() if isinstance(module, ConvOperator) else ConvSpec.from_conv(module)
    return conv_cost(spec, node.meta["shape"])


def _linear_module(module: nn.Linear, node: fx.Node) -> tuple[int, int, int]:
    return linear_cost(module.in_features, module.bias is not None, node.meta["shape"])


def _pool_module(module: nn.Module, node: fx.Node) -> tuple[int, int, int]:
    return pool_cost(node.meta["shape"])


def _attention_module(module: nn.MultiheadAttention, node: fx.Node) -> tuple[int, int, int]:
    """Multi-head attention (Vaswani et al. 2017): q/k/v and output projections are linears; Q K^T and
    softmax(.) V are matmuls of Lq x Lk x E each (summed over heads)."""
    query, key = (
        _arg_shape(node.args[0]),
        _arg_shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("key")),
    )
    batch_axis = 0 if module.batch_first else 1
    sequence_axis = 1 - batch_axis
    batch, length_q, length_k = query[batch_axis], query[sequence_axis], key[sequence_axis]
    embed = module.embed_dim
    projections = batch * (length_q * embed * embed + length_k * embed * (module.kdim + module.vdim))
    attention = 2 * batch * length_q * length_k * embed
    output = batch * length_q * embed * embed
    macs = projections + attention + output
    biases = batch * embed * (length_q + 2 * length_k) * (module.in_proj_bias is not None)
    biases += batch * length_q * embed * (module.out_proj.bias is not None)
    acts = batch * embed * (2 * length_q + 2 * length_k)
    return macs + biases, macs, acts


MODULE_COSTS: dict[type, Callable[[Any, fx.Node], tuple[int, int, int]]] = {
    nn.MultiheadAttention: _attention_module,
    nn.Conv2d: _conv_module,
    ConvOperator: _conv_module,
    nn.Linear: _linear_module,
    nn.modules.pooling._MaxPoolNd: _pool_module,
    nn.modules.pooling._AvgPoolNd: _pool_module,
    nn.modules.pooling._AdaptiveAvgPoolNd: _pool_module,
    nn.modules.pooling._AdaptiveMaxPoolNd: _pool_module,
}


def _module_cost(module: nn.Module, node: fx.Node) -> tuple[int, int, int] | None:
    for cls in type(module).__mro__:
        if cls in MODULE_COSTS:
            return MODULE_COSTS[cls](module, node)
    if module_rule(type(module)) is not None or isinstance(module, (nn.Flatten, nn.Unflatten)):
        return ZERO  # elementwise, norms, activations, dropout, reshapes: no conv/linear work
    return None


# -- function and method costs -----------------------------------------------------------------------------
def _arg_shape(value: Any) -> tuple[int, ...]:
    return value.meta.get("shape", ()) if isinstance(value, fx.Node) else ()


def _conv_function(node: fx.Node) -> tuple[int, int, int]:
    args = list(node.args) + [None] * 7
    weight_shape = _arg_shape(args[1])
    bias = node.kwargs.get("bias", args[2])
    groups = node.kwargs.get("groups", args[6] if args[6] is not None else 1)
    out_channels, in_per_group, kh, kw = weight_shape
    spec = ConvSpec(in_per_group * groups, out_channels, (kh, kw), groups=groups, bias=bias is not None)
    return conv_cost(spec, node.meta["shape"])


def _linear_function(node: fx.Node) -> tuple[int, int, int]:
    args = list(node.args) + [None] * 3
    bias = node.kwargs.get("bias", args[2])
    return linear_cost(_arg_shape(args[1])[-1], bias is not None, node.meta["shape"])


def _matmul(node: fx.Node) -> tuple[int, int, int]:
    return matmul_cost(_arg_shape(node.args[0]), _arg_shape(node.args[1]), node.meta["shape"])


def _pool_function(node: fx.Node) -> tuple[int, int, int]:
    return pool_cost(node.meta["shape"])


FUNCTION_COSTS: dict[Any, Callable[[fx.Node], tuple[int, int, int]]] = {
    F.conv2d: _conv_function,
    F.linear: _linear_function,
    torch.matmul: _matmul,
    torch.bmm: _matmul,
    operator.matmul: _matmul,
    F.max_pool2d: _pool_function,
    F.avg_pool2d: _pool_function,
    F.adaptive_avg_pool2d: _pool_function,
    F.adaptive_max_pool2d: _pool_function,
}
METHOD_COSTS: dict[str, Callable[[fx.Node], tuple[int, int, int]]] = {"matmul": _matmul, "bmm": _matmul}

# Known to cost nothing under the convention (shape bookkeeping, elementwise math, reductions, indexing).
FREE_FUNCTIONS: set[Any] = {
    *UNARY_FUNCTIONS,
    *BROADCAST_FUNCTIONS,
    torch.cat,
    torch.concat,
    torch.stack,
    torch.flatten,
    torch.reshape,
    torch.transpose,
    torch.permute,
    torch.chunk,
    torch.split,
    torch.squeeze,
    torch.unsqueeze,
    torch.mean,
    torch.sum,
    operator.getitem,
    getattr,
    operator.floordiv,
    operator.mod,
    torch.narrow,
    F.pad,
    F.interpolate,
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.not_,
    torch._assert,
}
FREE_METHODS: set[str] = {
    *UNARY_METHODS,
    *BROADCAST_METHODS,
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "contiguous",
    "size",
    "dim",
    "chunk",
    "split",
    "squeeze",
    "unsqueeze",
    "mean",
    "sum",
    "expand",
    "expand_as",
    "view_as",
    "to",
    "float",
    "type_as",
    "unbind",
    "narrow",
    "repeat",
    "__getitem__",
}


def register_function_cost(
    function: Any, cost: Callable[[fx.Node], tuple[int, int, int]] | None = None
) -> None:
    """Teach the counter a function; ``cost=None`` declares it free."""
    if cost is None:
        FREE_FUNCTIONS.add(function)
    else:
        FUNCTION_COSTS[function] = cost


# Free functions of optional packages, by qualified name (nothing is imported to know them).
FREE_FUNCTION_NAMES: set[str] = {"torchvision.ops.stochastic_depth.stochastic_depth"}


def node_cost(module: fx.GraphModule, node: fx.Node) -> tuple[str, tuple[int, int, int] | None]:
    """(op label, (flops, macs, acts)) of one node; None when the counter does not know the op."""
    if node.op in ("placeholder", "output", "get_attr"):
        return node.op, ZERO
    if node.op == "call_module":
        submodule = module.get_submodule(node.target)
        return type(submodule).__name__, _module_cost(submodule, node)
    if node.op == "call_function":
        label = qualified_name(node.target)
        if node.target in FUNCTION_COSTS:
            return label, FUNCTION_COSTS[node.target](node)
        return label, ZERO if node.target in FREE_FUNCTIONS or label in FREE_FUNCTION_NAMES else None
    label = f"Tensor.{node.target}"
    if node.target in METHOD_COSTS:
        return label, METHOD_COSTS[node.target](node)
    return label, ZERO if node.target in FREE_METHODS else None


def _parameter_counts(module: nn.Module) -> tuple[int, int]:
    """(deployed params, training params): operators counted as their collapsed conv for the first."""
    training = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    deployed = training
    for submodule in module.modules():
        if isinstance(submodule, ConvOperator):
            spec = submodule.collapsed_spec()
            collapsed = spec.out_channels * (spec.in_channels // spec.groups) * math.prod(spec.kernel_size)
            deployed += collapsed + (spec.out_channels if spec.bias else 0)
            deployed -= sum(p.numel() for p in submodule.parameters())
    return deployed, training


def count(module: fx.GraphModule) -> CostReport:
    """Costs of a captured graph (shapes must be propagated: ``nas.graph.capture``)."""
    report = CostReport()
    keys = node_keys(module)
    unknown: Counter[str] = Counter()
    placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
    if placeholders and "shape" not in placeholders[0].meta:
        raise ValueError("shapes are not propagated: capture the model with nas.graph.capture first")
    for node in module.graph.nodes:
        label, cost = node_cost(module, node)
        if cost is None:
            unknown[label] += 1
            continue
        flops, macs, acts = cost
        if flops or macs or acts:
            report.nodes.append(NodeCost(keys[node], label, flops, macs, acts))
            report.flops += flops
            report.macs += macs
            report.acts += acts
    report.params, report.training_params = _parameter_counts(module)
    report.unknown_ops = dict(unknown)
    return report
