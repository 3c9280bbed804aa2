"""Channel rules of functions and tensor methods (``call_function`` / ``call_method`` nodes), for
``channel_groups``.

A function of one tensor that keeps the rank (activations, pooling, interpolation, dropout, stochastic depth...)
passes channels through; one that returns no tensor (``size``, ``shape``) adds nothing, since fx computes such
values at run time. Anything else not listed here is opaque: its inputs' channels are kept.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..graph.shapes import BROADCAST_FUNCTIONS, BROADCAST_METHODS
from .channel_algebra import Axes, ChannelAlgebra, Expr, Value


class ChannelPropagator(Protocol):
    """What a rule may ask of the graph walk (``channel_groups.ChannelPropagator`` implements it)."""

    algebra: ChannelAlgebra
    result: Any  # channel_groups.ChannelAnalysis

    def key(self, node: fx.Node) -> str: ...
    def value(self, arg: Any) -> Value: ...
    def shape(self, arg: Any) -> tuple[int, ...] | None: ...
    def axes(self, arg: Any) -> Axes: ...
    def untracked(self, node: fx.Node) -> Value: ...
    def tensor_args(self, node: fx.Node) -> list[fx.Node]: ...
    def opaque(self, node: fx.Node, reason: str) -> Value: ...
    def same_rank(self, node: fx.Node, source: fx.Node) -> Value: ...


Rule = Callable[[ChannelPropagator, fx.Node], Value]


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _tie(p: ChannelPropagator, first: Expr | None, second: Expr | None, reason: str) -> None:
    """Two axes of equal size: unify when both are channels; a channel axis equal to a constant is fixed."""
    if first is not None and second is not None:
        p.algebra.unify(first, second, reason)
    elif first is not None or second is not None:
        p.algebra.fix(first or second, reason)


def broadcast(p: ChannelPropagator, node: fx.Node) -> Value:
    """Elementwise ops: inputs aligned from the right; axes of equal size are tied, a size-1 channel axis
    broadcast against more channels is fixed (it cannot grow)."""
    shape = p.shape(node)
    if shape is None:
        return p.opaque(node, "elementwise op without a tensor output")
    reason = f"{p.key(node)}: elementwise op"
    out: list[Expr | None] = []
    for axis, size in enumerate(shape):
        exprs, constant = [], False
        for tensor in p.tensor_args(node):
            tensor_shape, axes = p.shape(tensor), p.axes(tensor)
            index = axis - (len(shape) - len(tensor_shape))
            if index < 0:
                continue
            expr = axes[index]
            if tensor_shape[index] == size:
                constant |= expr is None
                if expr is not None:
                    exprs.append(expr)
            elif expr is not None:
                p.algebra.fix(expr, f"{reason}: {tensor_shape[index]} channel(s) broadcast to {size}")
        if exprs and constant:
            for expr in exprs:
                p.algebra.fix(expr, f"{reason}: channels meet a constant-sized axis")
            exprs = []
        for expr in exprs[1:]:
            p.algebra.unify(exprs[0], expr, reason)
        out.append(exprs[0] if exprs else None)
    return tuple(out)


def concatenate(p: ChannelPropagator, node: fx.Node) -> Value:
    """``torch.cat``: the concatenated axis sums its inputs' channels; the other axes are tied."""
    tensors, shape = list(_arg(node, 0, "tensors")), p.shape(node)
    dim = _arg(node, 1, "dim", 0) % len(shape)
    out: list[Expr | None] = []
    for axis in range(len(shape)):
        exprs = [p.axes(t)[axis] for t in tensors]
        if axis == dim:
            tracked = any(e is not None for e in exprs)
            total = sum(
                (e if e is not None else Expr(p.shape(t)[axis]) for t, e in zip(tensors, exprs)), Expr()
            )
            out.append(total if tracked else None)
            continue
        for expr in exprs[1:]:
            _tie(p, exprs[0], expr, f"{p.key(node)}: concatenated tensors")
        out.append(exprs[0])
    return tuple(out)


def stack(p: ChannelPropagator, node: fx.Node) -> Value:
    tensors, shape = list(_arg(node, 0, "tensors")), p.shape(node)
    dim = _arg(node, 1, "dim", 0) % len(shape)
    first = p.axes(tensors[0])
    for tensor in tensors[1:]:
        for a, b in zip(first, p.axes(tensor), strict=True):
            _tie(p, a, b, f"{p.key(node)}: stacked tensors")
    return (*first[:dim], None, *first[dim:])


def chunk(p: ChannelPropagator, node: fx.Node) -> Value:
    """``chunk(x, k, dim)``: each part of a channel axis is ``1/k`` of it (the parts scale with the whole)."""
    source, chunks = node.args[0], _arg(node, 1, "chunks")
    axes, shapes = p.axes(source), node.meta.get("shape")
    if not isinstance(chunks, int) or not isinstance(shapes, list):
        return p.opaque(node, "chunk with a computed count")
    dim = _arg(node, 2, "dim", 0) % len(axes)
    expr = axes[dim]
    if expr is None:
        return [
            tuple(a if s == o else None for a, s, o in zip(axes, part, p.shape(source))) for part in shapes
        ]
    if len(shapes) != chunks or p.shape(source)[dim] % chunks:
        return p.opaque(node, "chunks of unequal size")
    part = p.algebra.part(expr, 1, chunks, p.key(node))
    return [(*axes[:dim], part, *axes[dim + 1 :]) for _ in shapes]


def getitem(p: ChannelPropagator, node: fx.Node) -> Value:
    container, index = node.args[0], node.args[1]
    value = p.value(container)
    if isinstance(value, list) and isinstance(index, int):
        return value[index]
    if p.shape(container) is not None:
        return p.opaque(node, "tensor indexing")
    return p.untracked(node)


def reshape_blocks(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> list[tuple[list[int], list[int]]] | None:
    """Pair the axes of a reshape into blocks of equal size products (None when they do not pair)."""
    blocks, i, j = [], 0, 0
    while i < len(in_shape) or j < len(out_shape):
        ins, outs, a, b = [], [], 1, 1
        if i < len(in_shape):
            ins, a, i = [i], in_shape[i], i + 1
        if j < len(out_shape):
            outs, b, j = [j], out_shape[j], j + 1
        while a != b:
            if a < b and i < len(in_shape):
                ins.append(i)
                a, i = a * in_shape[i], i + 1
            elif b < a and j < len(out_shape):
                outs.append(j)
                b, j = b * out_shape[j], j + 1
            else:
                return None
        blocks.append((ins, outs))
    return blocks


def reshape(p: ChannelPropagator, node: fx.Node, source: fx.Node, dynamic: list[bool] | None) -> Value:
    """Reshapes move a channel axis: merged with constant axes it is multiplied by them; split over several axes
    it goes to the one whose size is computed at run time (``-1`` or from ``x.size()``); ``dynamic`` marks those
    (None: all). A channel axis that only literal sizes could hold is a reshape with fixed sizes: kept."""
    in_shape, out_shape, axes = p.shape(source), p.shape(node), p.axes(source)
    blocks = reshape_blocks(in_shape, out_shape) if in_shape and out_shape else None
    if blocks is None:
        return p.opaque(node, "reshape the analysis cannot follow")
    out: list[Expr | None] = [None] * len(out_shape)
    for ins, outs in blocks:
        tracked = [i for i in ins if axes[i] is not None]
        if len(tracked) > 1:
            for i in tracked:
                p.algebra.fix(axes[i], f"{p.key(node)}: reshape merges two channel axes")
        if len(tracked) != 1:
            continue
        expr = axes[tracked[0]]
        carriers = [j for j in outs if dynamic is None or dynamic[j]]
        if len(carriers) > 1:
            carriers = [j for j in carriers if out_shape[j] > 1]
        if len(carriers) != 1:
            p.algebra.fix(expr, f"{p.key(node)}: a reshape with fixed sizes")
            continue
        carrier = carriers[0]
        merged = math.prod(in_shape[i] for i in ins if i != tracked[0])
        split = math.prod(out_shape[j] for j in outs if j != carrier)
        out[carrier] = p.algebra.part(expr, merged, split, p.key(node))
    return tuple(out)


def _sizes_dynamic(sizes: Any, rank: int) -> list[bool] | None:
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple, torch.Size)):
        sizes = sizes[0]
    if len(sizes) != rank:
        return None
    return [not isinstance(size, int) or size == -1 for size in sizes]


def view(p: ChannelPropagator, node: fx.Node) -> Value:
    shape = p.shape(node)
    sizes = node.args[1:] if node.op == "call_method" else (_arg(node, 1, "shape"),)
    return reshape(p, node, node.args[0], _sizes_dynamic(tuple(sizes), len(shape)) if shape else None)


def unflatten(p: ChannelPropagator, node: fx.Node) -> Value:
    source, shape = node.args[0], p.shape(node)
    dim, sizes = _arg(node, 1, "dim") % len(p.shape(source)), _arg(node, 2, "sizes")
    new = [not isinstance(size, int) or size == -1 for size in sizes]
    return reshape(p, node, source, [True] * dim + new + [True] * (len(shape) - dim - len(new)))


def dynamic_reshape(p: ChannelPropagator, node: fx.Node) -> Value:
    return reshape(p, node, node.args[0], None)


def permute(p: ChannelPropagator, node: fx.Node) -> Value:
    axes = p.axes(node.args[0])
    dims = node.args[1:] if node.op == "call_method" else (_arg(node, 1, "dims"),)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return tuple(axes[d % len(axes)] for d in dims)


def transpose(p: ChannelPropagator, node: fx.Node) -> Value:
    axes = list(p.axes(node.args[0]))
    first, second = _arg(node, 1, "dim0") % len(axes), _arg(node, 2, "dim1") % len(axes)
    axes[first], axes[second] = axes[second], axes[first]
    return tuple(axes)


def reduce(p: ChannelPropagator, node: fx.Node) -> Value:
    """Reductions (``mean``, ``sum``, ``amax``...): reduced axes disappear (or become 1); the output does not
    depend on how many channels were reduced."""
    tensors = p.tensor_args(node)
    if len(tensors) > 1:
        return broadcast(p, node)  # torch.max(a, b) and friends
    source = tensors[0]
    axes, shape = p.axes(source), node.meta.get("shape")
    if isinstance(shape, list):
        return [_reduced(p, axes, node, part) for part in shape]
    return _reduced(p, axes, node, shape)


def _reduced(p: ChannelPropagator, axes: Axes, node: fx.Node, shape: Any) -> Axes:
    if not isinstance(shape, tuple):
        return ()
    if len(shape) == len(axes):
        return tuple(a if s == o else None for a, s, o in zip(axes, shape, p.shape(node.args[0])))
    dims = _arg(node, 1, "dim")
    dims = {d % len(axes) for d in ((dims,) if isinstance(dims, int) else dims or ())}
    kept = tuple(a for i, a in enumerate(axes) if i not in dims)
    return kept if len(kept) == len(shape) else (None,) * len(shape)


def expand(p: ChannelPropagator, node: fx.Node) -> Value:
    shape, axes = p.shape(node), p.axes(node.args[0])
    sizes = node.args[1:]
    literal = _sizes_dynamic(tuple(sizes), len(shape)) or [True] * len(shape)
    out: list[Expr | None] = [None] * len(shape)
    for index, expr in enumerate(axes):
        axis = index + len(shape) - len(axes)
        if expr is None:
            continue
        if p.shape(node.args[0])[index] != shape[axis] or not literal[axis]:
            p.algebra.fix(expr, f"{p.key(node)}: expand to a fixed size")
        else:
            out[axis] = expr
    return tuple(out)


def matmul(p: ChannelPropagator, node: fx.Node) -> Value:
    a, b = p.tensor_args(node)[:2]
    a_axes, b_axes, shape = p.axes(a), p.axes(b), p.shape(node)
    if len(a_axes) < 2 or len(b_axes) < 2 or shape is None:
        return p.opaque(node, "matmul of vectors")
    _tie(p, a_axes[-1], b_axes[-2], f"{p.key(node)}: matmul inner dimension")
    batch = a_axes[:-2] if len(a_axes) == len(shape) else (None,) * (len(shape) - 2)
    return (*batch, a_axes[-2], b_axes[-1])


def layer_norm(p: ChannelPropagator, node: fx.Node) -> Value:
    """``F.layer_norm(x, normalized_shape, weight, bias)``: a literal ``normalized_shape`` is rewritten after
    scaling (``LayerNorm2d`` modules traced through, as ConvNeXt's)."""
    axes, normalized = p.axes(node.args[0]), _arg(node, 1, "normalized_shape")
    if isinstance(normalized, fx.Node):
        return axes
    count = len(normalized)
    for param in (_arg(node, 2, "weight"), _arg(node, 3, "bias")):
        for a, b in zip(axes[-count:], p.axes(param) or (None,) * count):
            _tie(p, a, b, f"{p.key(node)}: layer_norm weight")
    if len(node.args) > 1:
        p.result.literal_shapes[node] = (1, axes[-count:])
    return axes


def channel_norm(p: ChannelPropagator, node: fx.Node) -> Value:
    """``F.batch_norm`` / ``F.instance_norm`` / ``F.group_norm``: their tensors follow the channel axis."""
    axes = p.axes(node.args[0])
    groups = _arg(node, 1, "num_groups") if node.target is F.group_norm else None
    if isinstance(groups, int) and groups > 1:
        if groups == p.shape(node.args[0])[1]:
            return p.opaque(node, "group_norm with one group per channel and a literal group count")
        p.algebra.require(axes[1] or Expr(), groups, f"{p.key(node)}: group_norm groups")
    for param in p.tensor_args(node)[1:]:
        _tie(p, axes[1], p.axes(param)[0], f"{p.key(node)}: norm statistics")
    return axes


def functional_weighted(p: ChannelPropagator, node: fx.Node) -> Value:
    """``F.conv*d`` / ``F.linear`` with weight tensors: inputs tie to the weight's input axis, outputs follow its
    output axis (parameters never lead, so a functional layer's outputs keep their size)."""
    axes, weight, bias = p.axes(node.args[0]), _arg(node, 1, "weight"), _arg(node, 2, "bias")
    weight_axes = p.axes(weight)
    if not weight_axes:
        return p.opaque(node, "weights that are not tensors of the graph")
    is_linear = node.target is F.linear
    if not is_linear and _arg(node, 6, "groups", 1) != 1:
        return p.opaque(node, "functional grouped conv")
    channel = -1 if is_linear else 1
    _tie(p, axes[channel], weight_axes[1], f"{p.key(node)}: layer input")
    if bias is not None:
        _tie(p, weight_axes[0], p.axes(bias)[0], f"{p.key(node)}: layer bias")
    out = list(axes)
    out[channel] = weight_axes[0]
    return tuple(out)


def first_tensor(p: ChannelPropagator, node: fx.Node) -> Value:
    return p.same_rank(node, node.args[0])


FUNCTIONS: dict[Any, Rule] = {
    **{f: broadcast for f in BROADCAST_FUNCTIONS},
    torch.where: broadcast,
    torch.cat: concatenate,
    torch.concat: concatenate,
    torch.stack: stack,
    torch.chunk: chunk,
    operator.getitem: getitem,
    torch.reshape: view,
    torch.flatten: dynamic_reshape,
    torch.squeeze: dynamic_reshape,
    torch.unsqueeze: dynamic_reshape,
    torch.permute: permute,
    torch.transpose: transpose,
    torch.swapaxes: transpose,
    torch.matmul: matmul,
    torch.bmm: matmul,
    operator.matmul: matmul,
    F.layer_norm: layer_norm,
    F.batch_norm: channel_norm,
    F.instance_norm: channel_norm,
    F.group_norm: channel_norm,
    F.conv1d: functional_weighted,
    F.conv2d: functional_weighted,
    F.conv3d: functional_weighted,
    F.linear: functional_weighted,
    **{
        f: reduce
        for f in (
            torch.mean,
            torch.sum,
            torch.amax,
            torch.amin,
            torch.max,
            torch.min,
            torch.std,
            torch.var,
            torch.logsumexp,
            torch.prod,
            torch.argmax,
            torch.argmin,
        )
    },
}
METHODS: dict[str, Rule] = {
    **{m: broadcast for m in BROADCAST_METHODS},
    "expand_as": broadcast,
    "chunk": chunk,
    "view": view,
    "reshape": view,
    "flatten": dynamic_reshape,
    "squeeze": dynamic_reshape,
    "unsqueeze": dynamic_reshape,
    "view_as": dynamic_reshape,
    "reshape_as": dynamic_reshape,
    "unflatten": unflatten,
    "permute": permute,
    "transpose": transpose,
    "swapaxes": transpose,
    "expand": expand,
    "matmul": matmul,
    "bmm": matmul,
    "to": first_tensor,
    "type_as": first_tensor,
    **{
        m: reduce
        for m in (
            "mean",
            "sum",
            "amax",
            "amin",
            "max",
            "min",
            "std",
            "var",
            "logsumexp",
            "prod",
            "argmax",
            "argmin",
            "norm",
        )
    },
}


def visit(p: ChannelPropagator, node: fx.Node) -> Value:
    """The channel rule of a call_function / call_method node."""
    rule = METHODS.get(node.target) if node.op == "call_method" else FUNCTIONS.get(node.target)
    if node.op == "call_function" and node.target is torch.unflatten:
        rule = unflatten
    if rule is not None:
        return rule(p, node)
    tensors = p.tensor_args(node)
    shape = node.meta.get("shape")
    if not tensors or shape is None:
        return p.untracked(node)  # sizes, arithmetic on sizes, new constant tensors
    if len(tensors) == 1 and isinstance(shape, tuple):
        return p.same_rank(node, tensors[0])
    return p.opaque(node, "not understood")
