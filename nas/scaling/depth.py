"""Depth scaling of a captured graph: find the stages and their repeated blocks, repeat or drop blocks.

A *block* is a run of ``p`` consecutive sibling modules (``p`` = 1 for ResNet's ``Bottleneck``, 2 or 3 for a
plain ``conv, [bn,] relu`` VGG) whose graph region has one tensor input and one tensor output and contains a
conv or linear. Sibling blocks of the same type chained one into the next form a run; a run splits into *stages*
where the output shape changes (a new resolution, or a new width as in MobileNetV2's 14x14 section), which
matches the stage tables of the papers (MobileNetV2's ``n`` column, ResNet's ``layer1..4``). Blocks of a stage
that keep their input shape and are identical (module types, arguments, parameter shapes, graph ops and shapes)
to its last block are *repeatable*: depth scaling sets a stage of ``n`` blocks to ``max(1, round(d * n))``
(Dollar et al. 2021; pycls) by copying the last block (fresh initialization: ``reset_parameters``) or dropping
repeatable blocks from the end. Stages where this cannot be done are reported, never guessed.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
from torch import nn

from .rounding import scale_depth

GENERIC = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Module)
MAX_PERIOD = 4


@dataclass
class Unit:
    children: tuple[str, ...]
    nodes: list[fx.Node]
    input: fx.Node
    output: fx.Node
    kinds: tuple
    signature: tuple = ()

    @property
    def keeps_shape(self) -> bool:
        return self.input.meta.get("shape") == self.output.meta.get("shape")


@dataclass
class Stage:
    container: str
    units: list[Unit]
    repeatable: int
    depth_before: int = 0
    output_name: str = ""

    @property
    def name(self) -> str:
        first, last = (u.children[0].rpartition(".")[2] for u in (self.units[0], self.units[-1]))
        return f"{self.container or '<root>'}[{first}..{last}]"


@dataclass
class ModuleTree:
    """Module paths seen in the graph (from ``nn_module_stack``): children in execution order, types, nodes."""

    children: dict[str, list[str]] = field(default_factory=dict)
    types: dict[str, type] = field(default_factory=dict)
    nodes: dict[str, list[fx.Node]] = field(default_factory=dict)
    position: dict[fx.Node, int] = field(default_factory=dict)
    kinds: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, nn.Module] = field(default_factory=dict)

    @staticmethod
    def of(module: fx.GraphModule) -> ModuleTree:
        tree = ModuleTree(modules=dict(module.named_modules()))
        for index, node in enumerate(module.graph.nodes):
            tree.position[node] = index
            parent = ""
            for path, cls in (node.meta.get("nn_module_stack") or {}).values():
                tree.types.setdefault(path, cls)
                siblings = tree.children.setdefault(parent, [])
                if path not in siblings:
                    siblings.append(path)
                under = tree.nodes.setdefault(path, [])
                if not under or under[-1] is not node:
                    under.append(node)
                parent = path
        return tree

    def kind(self, module: fx.GraphModule, path: str) -> Any:
        """What makes blocks alike: a module's type; a plain container's children's kinds too (a Sequential of 3
        blocks is not a Sequential of a conv and a norm); for a single layer (one conv or linear inside, e.g.
        conv + BN + ReLU), its kernel size and whether it is depthwise or grouped."""
        if path not in self.kinds:
            cls = self.types[path]
            layers = _compute_modules(self.modules, self.nodes[path])
            children = tuple(self.kind(module, child) for child in self.children.get(path, ()))
            if len(layers) == 1:
                kind = cls, _layer_kind(layers[0]), children if _is_container(cls) else ()
            else:
                kind = (cls.__name__, children) if _is_container(cls) else cls
            self.kinds[path] = kind
        return self.kinds[path]


def _is_container(cls: type) -> bool:
    """Plain containers: Sequential (and subclasses that keep its forward), ModuleList, ModuleDict, Module."""
    return cls in GENERIC or getattr(cls, "forward", None) is nn.Sequential.forward


def _layer_kind(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.modules.conv._ConvNd):
        groups = (
            "depthwise"
            if layer.groups == layer.in_channels > 1
            else "grouped"
            if layer.groups > 1
            else "dense"
        )
        return type(layer).__name__, tuple(layer.kernel_size), groups
    return (type(layer).__name__,)


def _compute_modules(modules: dict[str, nn.Module], nodes: list[fx.Node]) -> list[nn.Module]:
    """The conv and linear modules that ``nodes`` call."""
    found = []
    for node in nodes:
        leaf = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(leaf, (nn.Linear, nn.modules.conv._ConvNd)):
            found.append(leaf)
    return found


def _is_tensor(node: fx.Node) -> bool:
    return isinstance(node.meta.get("shape"), tuple)


def make_unit(module: fx.GraphModule, tree: ModuleTree, children: tuple[str, ...]) -> Unit | None:
    """The block made of ``children`` when its region has one tensor input and one tensor output."""
    region = {node for child in children for node in tree.nodes[child]}
    nodes = sorted(region, key=tree.position.__getitem__)
    inputs = {arg for node in nodes for arg in node.all_input_nodes if arg not in region}
    tensor_inputs = [arg for arg in inputs if _is_tensor(arg)]
    outputs = [node for node in nodes if any(user not in region for user in node.users)]
    if len(tensor_inputs) != 1 or len(outputs) != 1 or len(outputs[0].meta.get("shape") or ()) < 3:
        return None  # blocks map one spatial tensor to one spatial tensor (classifier MLPs are not stages)
    if not _compute_modules(tree.modules, nodes):
        return None
    return Unit(children, nodes, tensor_inputs[0], outputs[0], tuple(tree.kind(module, c) for c in children))


def _literal(value: Any) -> Any:
    return "float" if isinstance(value, float) else value


def signature(module: fx.GraphModule, unit: Unit) -> tuple:
    """Module types, arguments and parameter shapes, graph ops and output shapes (float literals such as a
    stochastic-depth rate ignored): equal signatures mean identical blocks."""
    index = {node: i for i, node in enumerate(unit.nodes)}
    prefixes = {child: f"#{i}" for i, child in enumerate(unit.children)}
    entries = []
    for node in unit.nodes:
        args = fx.node.map_aggregate(
            (node.args, node.kwargs),
            lambda a: ("node", index[a]) if a in index else ("in",) if a is unit.input else ("ext", a.name)
            if isinstance(a, fx.Node) else _literal(a),
        )  # fmt: skip
        target: Any = node.target
        if node.op in ("call_module", "get_attr"):
            child = next(c for c in unit.children if target == c or target.startswith(c + "."))
            relative = prefixes[child] + target[len(child) :]
            if node.op == "call_module":
                leaf = module.get_submodule(target)
                params = tuple((n, tuple(p.shape)) for n, p in leaf.named_parameters())
                target = (relative, type(leaf).__name__, leaf.extra_repr(), params)
            else:
                target = relative
        elif node.op == "call_function":
            target = getattr(target, "__qualname__", str(target))
        entries.append((node.op, target, repr(args), node.meta.get("shape")))
    return tuple(entries)


def _runs(
    module: fx.GraphModule, tree: ModuleTree, children: list[str], period: int, covered: set[int]
) -> list:
    """Maximal runs (>= 2) of chained, same-kind ``period``-tuples of children not yet covered."""
    runs, start = [], 0
    units: dict[int, Unit | None] = {}

    def unit_at(i: int) -> Unit | None:
        if i not in units:
            window = range(i, i + period)
            ok = i + period <= len(children) and not covered.intersection(window)
            units[i] = make_unit(module, tree, tuple(children[j] for j in window)) if ok else None
        return units[i]

    while start < len(children):
        run = [unit_at(start)] if unit_at(start) else []
        while run:
            following = unit_at(start + period * len(run))
            if following is None or following.kinds != run[0].kinds or following.input is not run[-1].output:
                break
            run.append(following)
        if len(run) >= 2:
            runs.append((start, run))
            start += period * len(run)
        else:
            start += 1
    return runs


def _stages(module: fx.GraphModule, container: str, run: list[Unit]) -> list[Stage]:
    """Split a run where the block output shape changes; mark each stage's repeatable tail."""
    groups: list[list[Unit]] = []
    for unit in run:
        if groups and groups[-1][-1].output.meta["shape"] == unit.output.meta["shape"]:
            groups[-1].append(unit)
        else:
            groups.append([unit])
    stages = []
    for units in groups:
        for unit in units:
            unit.signature = signature(module, unit)
        last, repeatable = units[-1], 0
        for unit in reversed(units):
            if not unit.keeps_shape or unit.signature != last.signature:
                break
            repeatable += 1
        stages.append(Stage(container, units, repeatable, len(units), last.output.name))
    return stages


def find_stages(module: fx.GraphModule) -> tuple[list[Stage], list[str]]:
    """Stages of repeated blocks, outermost first; and notes about sibling blocks that are not repeatable units
    (e.g. DenseNet's dense layers, which take every earlier output)."""
    tree = ModuleTree.of(module)
    stages: list[Stage] = []
    notes: list[str] = []

    def visit(container: str) -> None:
        children = tree.children.get(container, [])
        covered: set[int] = set()
        for period in range(1, MAX_PERIOD + 1):
            for start, run in _runs(module, tree, children, period, covered):
                found = _stages(module, container, run)
                if any(len(stage.units) > 1 for stage in found):
                    stages.extend(found)
                    covered.update(range(start, start + period * len(run)))
        _note_dense(module, tree, container, children, covered, notes)
        for index, child in enumerate(children):
            if index not in covered and tree.children.get(child):
                visit(child)

    visit("")
    stages.sort(key=lambda stage: tree.position[stage.units[0].nodes[0]])
    return stages, notes


def _note_dense(
    module: fx.GraphModule,
    tree: ModuleTree,
    container: str,
    children: list[str],
    covered: set[int],
    notes: list[str],
) -> None:
    """A note when siblings of one kind with convs are no blocks (several inputs: dense connections)."""
    same = [i for i in range(1, len(children)) if {i - 1, i}.isdisjoint(covered)
            and tree.kind(module, children[i]) == tree.kind(module, children[i - 1])
            and not _is_container(tree.types[children[i]]) and _compute_modules(tree.modules, tree.nodes[children[i]])
            and make_unit(module, tree, (children[i],)) is None]  # fmt: skip
    if same:
        kind = tree.types[children[same[0]]].__name__
        notes.append(
            f"depth: {container or '<root>'} repeats {kind} blocks that are not single-input, single-output "
            f"(e.g. dense connections): their number is kept"
        )


# -- editing -----------------------------------------------------------------------------------------------------
def _free_name(container: nn.Module, template: str, taken: set[str]) -> str:
    names = set(container._modules) | taken
    match = re.fullmatch(r"(.*?)(\d+)", template)
    if match:
        prefix = match.group(1)
        numbers = [int(m.group(1)) for n in names if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", n))]
        name = f"{prefix}{max(numbers) + 1}"
    else:
        count = 1
        while f"{template}_{count}" in names:
            count += 1
        name = f"{template}_{count}"
    taken.add(name)
    return name


def _renamed_stack(meta: dict, old: str, new: str) -> None:
    stack = meta.get("nn_module_stack")
    if not stack:
        return

    def rename(path: str) -> str:
        return new + path[len(old) :] if path == old or path.startswith(old + ".") else path

    meta["nn_module_stack"] = OrderedDict((rename(k), (rename(p), cls)) for k, (p, cls) in stack.items())


def _reset(module: nn.Module) -> nn.Module:
    for submodule in module.modules():
        reset = getattr(submodule, "reset_parameters", None)
        if callable(reset):
            reset()
    return module


def _copy_unit(
    module: fx.GraphModule, template: Unit, tail: fx.Node, after: fx.Node, taken: dict[str, set[str]]
) -> tuple[fx.Node, fx.Node]:
    """Insert a fresh copy of ``template`` fed by ``tail``, right after node ``after``; returns the copy's output
    and its last node."""
    renames = {}
    for child in template.children:
        parent_path, _, name = child.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        new_name = _free_name(parent, name, taken.setdefault(parent_path, set()))
        new_path = f"{parent_path}.{new_name}" if parent_path else new_name
        module.add_submodule(new_path, _reset(copy.deepcopy(module.get_submodule(child))))
        renames[child] = new_path
    env: dict[fx.Node, fx.Node] = {template.input: tail}
    with module.graph.inserting_before(after.next):
        for node in template.nodes:
            new = module.graph.node_copy(node, lambda a: env.get(a, a))
            for old, path in renames.items():
                if isinstance(new.target, str) and (new.target == old or new.target.startswith(old + ".")):
                    new.target = path + new.target[len(old) :]
                _renamed_stack(new.meta, old, path)
            env[node] = new
    return env[template.output], env[template.nodes[-1]]


def set_depth(module: fx.GraphModule, stage: Stage, depth: int, taken: dict[str, set[str]]) -> int:
    """Give ``stage`` ``depth`` blocks as far as its repeatable blocks allow; returns the depth reached."""
    fixed = len(stage.units) - stage.repeatable
    if stage.repeatable == 0:
        return len(stage.units)
    wanted = max(fixed, depth)
    last = stage.units[-1]
    users = [user for user in last.output.users if user not in set(last.nodes)]
    if wanted > len(stage.units):
        tail, after = last.output, last.nodes[-1]
        for _ in range(wanted - len(stage.units)):
            tail, after = _copy_unit(module, last, tail, after, taken)
        for user in users:
            user.replace_input_with(last.output, tail)
        stage.output_name = tail.name
    elif wanted < len(stage.units):
        for unit in reversed(stage.units[wanted:]):
            keep = set(unit.nodes)
            for user in [u for u in unit.output.users if u not in keep]:
                user.replace_input_with(unit.output, unit.input)
            for node in reversed(unit.nodes):
                module.graph.erase_node(node)
        stage.output_name = stage.units[wanted - 1].output.name
    return wanted


def scale_depths(module: fx.GraphModule, stages: list[Stage], factor: float) -> tuple[list[int], list[str]]:
    """Set every stage to ``max(1, round(d * n))`` blocks where it can; returns the new depths and notes."""
    notes, depths, taken = [], [], {}
    for stage in stages:
        target = scale_depth(len(stage.units), factor)
        reached = set_depth(module, stage, target, taken)
        depths.append(reached)
        if reached != target:
            why = ("its blocks change the shape, so none can be repeated" if stage.repeatable == 0
                   else f"only {stage.repeatable} of its blocks are repeatable")  # fmt: skip
            notes.append(
                f"depth: stage {stage.name} has {len(stage.units)} blocks, kept {reached} instead of {target}: {why}"
            )
    module.graph.lint()
    module.recompile()
    module.delete_all_unused_submodules()
    return depths, notes
