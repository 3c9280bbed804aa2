"""Stages and repeated blocks of a captured graph (what depth scaling deepens or shortens).

A *block* is a run of ``p`` consecutive sibling modules (``p`` = 1 for ResNet's ``Bottleneck``, 2 or 3 for a
plain ``conv, [bn,] relu`` VGG) whose graph region has one tensor input and one tensor output and contains a
conv or linear; the parent's own shape-keeping ops right after it (``x = x + block(x)`` in a loop) belong to it.
Sibling blocks of the same kind chained one into the next form a run; a run splits into *stages* where the output
shape changes (a new resolution, or a new width as in MobileNetV2's 14x14 section), which matches the stage
tables of the papers (MobileNetV2's ``n`` column, ResNet's ``layer1..4``). Blocks of a stage that keep their input
shape and are identical (module types, arguments, parameter shapes, graph ops and shapes) to its last block are
*repeatable*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
from torch import nn

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
    paths: dict[fx.Node, list[str]] = field(default_factory=dict)
    order: list[fx.Node] = field(default_factory=list)

    @staticmethod
    def of(module: fx.GraphModule) -> ModuleTree:
        tree = ModuleTree(modules=dict(module.named_modules()))
        for index, node in enumerate(module.graph.nodes):
            tree.position[node] = index
            tree.order.append(node)
            tree.paths[node] = [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]
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


def _single_entry_exit(region: set[fx.Node], nodes: list[fx.Node]) -> tuple[fx.Node, fx.Node] | None:
    inputs = {arg for node in nodes for arg in node.all_input_nodes if arg not in region}
    tensor_inputs = [arg for arg in inputs if _is_tensor(arg)]
    outputs = [node for node in nodes if any(user not in region for user in node.users)]
    if len(tensor_inputs) != 1 or len(outputs) != 1 or len(outputs[0].meta.get("shape") or ()) < 3:
        return None  # blocks map one spatial tensor to one spatial tensor (classifier MLPs are not stages)
    return tensor_inputs[0], outputs[0]


def _trailing(tree: ModuleTree, container: str, region: set[fx.Node], last: fx.Node) -> list[fx.Node]:
    """The container's own shape-keeping nodes right after a block that use it (``x = x + block(x)`` or
    ``relu(block(x))`` written in the parent's forward): they belong to the block."""
    found: list[fx.Node] = []
    shape = last.meta.get("shape")
    for node in tree.order[tree.position[last] + 1 :]:
        paths = tree.paths[node]
        own = (bool(paths) and paths[-1] == container) if container else not paths
        if node.op in ("output", "placeholder", "get_attr") or not own or node.meta.get("shape") != shape:
            break
        if not any(arg in region or arg in found for arg in node.all_input_nodes):
            break
        found.append(node)
    return found


def make_unit(
    module: fx.GraphModule, tree: ModuleTree, children: tuple[str, ...], container: str = ""
) -> Unit | None:
    """The block made of ``children`` (with the container's own nodes that follow and use only it) when its
    region has one tensor input and one tensor output."""
    region = {node for child in children for node in tree.nodes[child]}
    nodes = sorted(region, key=tree.position.__getitem__)
    trailing = _trailing(tree, container, region, nodes[-1])
    extended = _single_entry_exit(region | set(trailing), nodes + trailing) if trailing else None
    if extended is not None:
        nodes, ends = nodes + trailing, extended
    else:
        ends = _single_entry_exit(region, nodes)
    if ends is None or not _compute_modules(tree.modules, nodes):
        return None
    return Unit(children, nodes, *ends, tuple(tree.kind(module, c) for c in children))


def _literal(value: Any) -> Any:
    return "float" if isinstance(value, float) else value


def signature(module: fx.GraphModule, unit: Unit) -> tuple:
    """Module types, arguments and parameter shapes, graph ops and output shapes (float literals such as a
    stochastic-depth rate ignored): equal signatures mean identical blocks."""
    index = {node: i for i, node in enumerate(unit.nodes)}
    prefixes = {child: f"#{i}" for i, child in enumerate(unit.children)}

    def describe(value: Any) -> Any:
        if not isinstance(value, fx.Node):
            return _literal(value)
        if value in index:
            return "node", index[value]
        return ("in",) if value is unit.input else ("ext", value.name)

    entries = []
    for node in unit.nodes:
        args = fx.node.map_aggregate((node.args, node.kwargs), describe)
        target: Any = node.target
        if node.op in ("call_module", "get_attr"):
            child = next((c for c in unit.children if target == c or target.startswith(c + ".")), None)
            relative = prefixes[child] + target[len(child) :] if child is not None else target
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


def _runs(module: fx.GraphModule, tree: ModuleTree, container: str, period: int, covered: set[int]) -> list:
    """Maximal runs (>= 2) of chained, same-kind ``period``-tuples of children not yet covered."""
    children = tree.children.get(container, [])
    runs, start = [], 0
    units: dict[int, Unit | None] = {}

    def unit_at(i: int) -> Unit | None:
        if i not in units:
            window = range(i, i + period)
            ok = i + period <= len(children) and not covered.intersection(window)
            units[i] = make_unit(module, tree, tuple(children[j] for j in window), container) if ok else None
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
        stages.append(Stage(container, units, repeatable, last.output.name))
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
            for start, run in _runs(module, tree, container, period, covered):
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
    same = [
        i
        for i in range(1, len(children))
        if {i - 1, i}.isdisjoint(covered)
        and tree.kind(module, children[i]) == tree.kind(module, children[i - 1])
        and not _is_container(tree.types[children[i]])
        and _compute_modules(tree.modules, tree.nodes[children[i]])
        and make_unit(module, tree, (children[i],), container) is None
    ]
    if same:
        kind = tree.types[children[same[0]]].__name__
        notes.append(
            f"depth: {container or '<root>'} repeats {kind} blocks that are not single-input, single-output "
            f"(e.g. dense connections): their number is kept"
        )
