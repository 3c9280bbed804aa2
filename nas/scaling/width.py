"""Width scaling of a captured graph: size the channel groups, rebuild the modules whose sizes change.

Every free channel group scales by ``w``, to multiples of 8 (and of what its convs' groups need); the input
channels and the outputs are kept (``channel_groups``). A module whose sizes change is rebuilt with fresh
initialization (its own ``reset_parameters``, as a new module of that type); unchanged modules keep their
weights. A parameter read by ``get_attr`` (ConvNeXt's layer scale, a traced LayerNorm2d's weight) is resized by
repeating its values along the scaled axes. Grouped convs: depthwise convs stay depthwise; a grouped conv with
equal in and out channels gets the group width ``snap(round(g * group width))`` (pycls's group-width rounding)
and as many groups as fit; other grouped convs keep their number of groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from operators import ConvSpec

from ..cost import conv_cost, linear_cost, node_cost
from .channel_groups import CONVS, NORMS, ChannelAnalysis
from .rounding import scale_group_width


@dataclass
class WidthPlan:
    """New atom sizes, new group widths of grouped convs, and what the user should know."""

    sizes: list[int]
    group_widths: dict[str, int] = field(default_factory=dict)  # conv module target -> new group width
    warnings: list[str] = field(default_factory=list)


def plan_widths(analysis: ChannelAnalysis, width: float, group: float) -> WidthPlan:
    """Group-width requirements first (they depend only on ``g``), then every group's size. The analysis is not
    changed (requirements go to a copy of its algebra), so it can serve several plans."""
    algebra = analysis.algebra.copy()
    group_widths: dict[str, int] = {}
    first_calls = {}
    for node in analysis.values:
        if node.op == "call_module":
            first_calls.setdefault(node.target, node)
    for target, plan in analysis.conv_plans.items():
        if plan.kind != "grouped":
            continue
        expr = analysis.values[first_calls[target].args[0]][1]
        if expr is None or all(algebra.is_fixed(atom) for atom in expr.atoms):
            continue
        new_width = scale_group_width(plan.group_width, group)
        algebra.require(expr, new_width, f"{target}: group width")
        group_widths[target] = new_width
    sizes, warnings = algebra.solve(width)
    return WidthPlan(sizes, group_widths, warnings)


def axis_size(analysis: ChannelAnalysis, plan: WidthPlan, node: fx.Node, axis: int) -> int:
    """The new size of a tensor node's axis."""
    value, shape = analysis.values.get(node), node.meta["shape"]
    expr = value[axis] if isinstance(value, tuple) and len(value) == len(shape) else None
    return shape[axis] if expr is None else analysis.algebra.size(expr, plan.sizes)


def _new_conv(old: nn.Module, in_channels: int, out_channels: int, groups: int, factory: dict) -> nn.Module:
    return type(old)(
        in_channels,
        out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        **factory,
    )


def _new_groups(
    analysis: ChannelAnalysis, plan: WidthPlan, node: fx.Node, module: nn.Module, new_in: int
) -> int:
    plan_of_conv = analysis.conv_plans.get(node.target)  # None: an opaque conv node
    kind = plan_of_conv.kind if plan_of_conv is not None else "fixed"
    if kind == "depthwise":
        return new_in
    if kind == "grouped" and node.target in plan.group_widths:
        group_width = plan.group_widths[node.target]
        return max(1, new_in // group_width)
    return module.groups


def conv_geometry(
    analysis: ChannelAnalysis, plan: WidthPlan, node: fx.Node, module: nn.Module
) -> tuple[int, int, int]:
    """A conv node's new (in channels, out channels, groups)."""
    new_in, new_out = axis_size(analysis, plan, node.args[0], 1), axis_size(analysis, plan, node, 1)
    return new_in, new_out, _new_groups(analysis, plan, node, module, new_in)


def planned_flops(analysis: ChannelAnalysis, plan: WidthPlan) -> int:
    """The graph's flops under ``plan`` without rebuilding anything: convs and linears by ``nas.cost``'s formulas
    at their new sizes, every other node at its current cost."""
    module = analysis.module
    modules = dict(module.named_modules())
    total = 0
    for node in module.graph.nodes:
        leaf = modules.get(node.target) if node.op == "call_module" else None
        shape = node.meta.get("shape")
        if type(leaf) is nn.Conv2d and isinstance(node.args[0].meta.get("shape"), tuple):
            new_in, new_out, groups = conv_geometry(analysis, plan, node, leaf)
            spec = ConvSpec(
                new_in, new_out, tuple(leaf.kernel_size), groups=groups, bias=leaf.bias is not None
            )
            total += conv_cost(spec, (shape[0], new_out, *shape[2:]))[0]
        elif isinstance(leaf, nn.Linear) and isinstance(node.args[0].meta.get("shape"), tuple):
            new_in, new_out = axis_size(analysis, plan, node.args[0], -1), axis_size(analysis, plan, node, -1)
            total += linear_cost(new_in, leaf.bias is not None, (*shape[:-1], new_out))[0]
        else:
            cost = node_cost(module, node)[1]
            total += cost[0] if cost else 0
    return total


def rebuilt_module(
    analysis: ChannelAnalysis, plan: WidthPlan, node: fx.Node, module: nn.Module, device: str | None = None
) -> nn.Module | None:
    """The module a call_module node needs at the new widths (on ``device``, default the old module's); None when
    it stays as it is."""
    factory = _factory(module, device)
    source = node.args[0] if node.args else None
    if not isinstance(source, fx.Node) or not isinstance(source.meta.get("shape"), tuple):
        return None
    if type(module) in CONVS:
        new_in, new_out, groups = conv_geometry(analysis, plan, node, module)
        if (new_in, new_out, groups) == (module.in_channels, module.out_channels, module.groups):
            return None
        return _new_conv(module, new_in, new_out, groups, factory)
    if isinstance(module, nn.Linear):
        new_in, new_out = axis_size(analysis, plan, source, -1), axis_size(analysis, plan, node, -1)
        if (new_in, new_out) == (module.in_features, module.out_features):
            return None
        return nn.Linear(new_in, new_out, module.bias is not None, **factory)
    if isinstance(module, NORMS):
        features = axis_size(analysis, plan, source, 1)
        if features == module.num_features:
            return None
        return type(module)(
            features, module.eps, module.momentum, module.affine, module.track_running_stats, **factory
        )
    if isinstance(module, nn.GroupNorm):
        channels = axis_size(analysis, plan, source, 1)
        if channels == module.num_channels:
            return None
        groups = channels if module.num_groups == module.num_channels else module.num_groups
        return nn.GroupNorm(groups, channels, module.eps, module.affine, **factory)
    if isinstance(module, nn.LayerNorm):
        rank = len(source.meta["shape"])
        shape = tuple(
            axis_size(analysis, plan, source, rank - len(module.normalized_shape) + i)
            for i in range(len(module.normalized_shape))
        )
        if shape == tuple(module.normalized_shape):
            return None
        return nn.LayerNorm(
            shape, module.eps, module.elementwise_affine, bias=module.bias is not None, **factory
        )
    if isinstance(module, nn.PReLU) and module.num_parameters > 1:
        count = axis_size(analysis, plan, source, 1)
        if count == module.num_parameters:
            return None
        weight = module.weight.detach()
        init = 0.25 if weight.is_meta else float(weight.float().mean())
        return nn.PReLU(count, init=init, **factory)
    return None


def _factory(module: nn.Module, device: str | None) -> dict:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    factory = {} if tensor is None else {"device": tensor.device, "dtype": tensor.dtype}
    return factory if device is None else {**factory, "device": torch.device(device)}


def resized(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``tensor`` at ``shape``, its values repeated (or cut) along every axis whose size changes."""
    result = tensor.detach()
    for axis, size in enumerate(shape):
        if result.shape[axis] != size:
            index = torch.arange(size, device=result.device) % result.shape[axis]
            result = result.index_select(axis, index)
    return result.clone()


def _set_attr(root: nn.Module, target: str, value: torch.Tensor, like: torch.Tensor) -> None:
    owner_path, _, name = target.rpartition(".")
    owner = root.get_submodule(owner_path) if owner_path else root
    if isinstance(like, nn.Parameter):
        setattr(owner, name, nn.Parameter(value, requires_grad=like.requires_grad))
    elif name in owner._buffers:
        owner._buffers[name] = value
    else:
        setattr(owner, name, value)


@dataclass
class WidthEdit:
    """What ``apply_widths`` changed, so that a failed attempt can be undone."""

    module: fx.GraphModule
    modules: dict[str, nn.Module] = field(default_factory=dict)  # path -> the replaced module
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)  # get_attr target -> the old tensor
    arguments: dict[fx.Node, tuple] = field(default_factory=dict)  # node -> its old args

    def undo(self) -> None:
        for path, old in self.modules.items():
            _replace(self.module, path, old)
        for target, old in self.attributes.items():
            owner_path, _, name = target.rpartition(".")
            owner = self.module.get_submodule(owner_path) if owner_path else self.module
            if name in owner._buffers:
                owner._buffers[name] = old
            else:
                setattr(owner, name, old)
        for node, args in self.arguments.items():
            node.args = args
        if self.arguments:
            self.module.recompile()


def apply_widths(analysis: ChannelAnalysis, plan: WidthPlan, device: str | None = None) -> WidthEdit:
    """Rebuild modules, resize parameters and rewrite literal shapes in place (new tensors on ``device``, default
    where the old ones are: ``"meta"`` to try a plan cheaply and undo it)."""
    module = analysis.module
    edit = WidthEdit(module)
    for node in module.graph.nodes:
        if node.op == "call_module" and node.target not in edit.modules:
            old = module.get_submodule(node.target)
            new = rebuilt_module(analysis, plan, node, old, device)
            if new is not None:
                new.train(old.training)
                _replace(module, node.target, new)
                edit.modules[node.target] = old
        elif node.op == "get_attr" and isinstance(node.meta.get("shape"), tuple):
            shape = tuple(axis_size(analysis, plan, node, axis) for axis in range(len(node.meta["shape"])))
            old = _get_attr(module, node.target)
            if (
                isinstance(old, torch.Tensor)
                and tuple(old.shape) != shape
                and node.target not in edit.attributes
            ):
                _set_attr(module, node.target, resized(old if device is None else old.to(device), shape), old)
                edit.attributes[node.target] = old
    for node, (index, axes) in analysis.literal_shapes.items():
        shape = node.args[0].meta["shape"]
        offset = len(shape) - len(axes)
        new = tuple(axis_size(analysis, plan, node.args[0], offset + i) for i in range(len(axes)))
        args = list(node.args)
        args[index] = type(args[index])(new) if isinstance(args[index], (list, tuple)) else new
        edit.arguments[node] = node.args
        node.args = tuple(args)
    if edit.arguments:  # module swaps need no new code; changed arguments do
        module.recompile()
    return edit


def _get_attr(root: nn.Module, target: str) -> object:
    owner_path, _, name = target.rpartition(".")
    return getattr(root.get_submodule(owner_path) if owner_path else root, name)


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, child, new)


def expected_sizes(analysis: ChannelAnalysis, plan: WidthPlan) -> dict[str, list[tuple[int, int]]]:
    """Every tracked axis's expected new size: ``{node name: (axis, size)}`` pairs, for verification."""
    expected: dict[str, list[tuple[int, int]]] = {}
    for node, value in analysis.values.items():
        if isinstance(value, tuple) and isinstance(node.meta.get("shape"), tuple):
            for axis, expr in enumerate(value):
                if expr is not None:
                    size = analysis.algebra.size(expr, plan.sizes)
                    expected.setdefault(node.name, []).append((axis, size))
    return expected


def check_sizes(module: fx.GraphModule, expected: dict[str, list[tuple[int, int]]]) -> fx.Node | None:
    """The first node whose propagated shape disagrees with the plan, None when all agree."""
    for node in module.graph.nodes:
        shape = node.meta.get("shape")
        for axis, size in expected.get(node.name, ()):
            if not isinstance(shape, tuple) or shape[axis] != size:
                return node
    return None


def group_width_of(module: nn.Module) -> int | None:
    """The group width of a grouped (not depthwise) conv, None otherwise."""
    if type(module) in CONVS and 1 < module.groups < module.in_channels:
        return module.in_channels // module.groups
    return None
