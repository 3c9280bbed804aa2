"""Depth scaling of a captured graph: every stage of repeated blocks (``blocks``) to ``max(1, round(d * n))``
blocks (Dollar et al. 2021; pycls), by copying its last block (fresh initialization: ``reset_parameters``) or
dropping repeatable blocks from its end. Stages where this cannot be done are reported, never guessed.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict

import torch.fx as fx
from torch import nn

from .blocks import Stage, Unit
from .rounding import scale_depth


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
            why = (
                "its blocks change the shape, so none can be repeated"
                if stage.repeatable == 0
                else f"only {stage.repeatable} of its blocks are repeatable"
            )
            blocks = f"{len(stage.units)} block" + ("s" if len(stage.units) != 1 else "")
            notes.append(f"depth: stage {stage.name} has {blocks}, kept {reached} instead of {target}: {why}")
    module.graph.lint()
    module.recompile()
    module.delete_all_unused_submodules()
    return depths, notes
