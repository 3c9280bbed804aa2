"""Graph-level scaling of any captured model: resolution, then depth, then width (Dollar et al. 2021's rules
applied to a torch.fx graph through its channel groups and stages).

- resolution: the input size times ``r``, to multiples of 4 (pycls); when the model does not run at that size,
  to multiples of its total stride; when it runs at neither, kept (said in ``notes``).
- depth: every stage of repeated blocks to ``max(1, round(d * n))`` blocks (``depth``).
- width: every free channel group times ``w``, to multiples of 8, grouped convs' group widths times ``g``
  (``channel_groups``, ``width``). A rebuild that does not propagate (an op whose channel rule was wrong) is
  undone and retried with that node's channels kept, so the result always runs.
The returned GraphModule is a scaled copy: the model passed in is not changed; unchanged modules keep their
weights, rebuilt and copied ones are freshly initialized.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..cost import count
from ..graph.capture import capture
from ..graph.shapes import ShapeInterpreter, propagate_shapes
from .architecture import Architecture, resolution_of
from .blocks import Stage, find_stages
from .channel_algebra import Kind
from .channel_groups import ChannelAnalysis, analyze_channels
from .depth import scale_depths
from .rounding import RESOLUTION_QUANTUM, scale_resolution
from .rules import ScalingFactors
from .width import (
    WidthEdit,
    apply_widths,
    check_sizes,
    expected_sizes,
    group_width_of,
    plan_widths,
    planned_flops,
)

ANALYSIS_BATCH = 2  # batch 2 keeps the batch axis apart from size-1 axes when reshapes are paired
MAX_RETRIES = 8
MATCH_STEPS = 8
MATCH_TOLERANCE = 0.01  # |log(planned / target)|: 1%
_EXPECTED = ("input channels are kept", "the model's outputs are kept")


@dataclass
class GraphScaling:
    module: fx.GraphModule
    input_shape: tuple[int, int, int]
    before: Architecture
    after: Architecture
    notes: list[str] = field(default_factory=list)


class _Recorder(ShapeInterpreter):
    def run_node(self, node: fx.Node) -> Any:
        self.current = node
        return super().run_node(node)


def propagate_or_node(module: fx.GraphModule, shape: tuple[int, ...]) -> fx.Node | None:
    """Propagate shapes; the node where it fails, or None."""
    interpreter = _Recorder(module)
    interpreter.current = None
    try:
        interpreter.run(torch.empty(shape, device="meta"))
    except Exception:
        return interpreter.current or next(iter(module.graph.nodes))
    return None


def choose_resolution(
    module: fx.GraphModule, input_shape: tuple[int, int, int], factor: float
) -> tuple[tuple[int, int, int], list[str]]:
    """``round(r * size / 4) * 4``, else multiples of the total stride, else the size kept (with a note)."""
    channels, height, width = input_shape
    if factor == 1.0:
        return input_shape, []
    spatial = [
        s[-2:]
        for s in (n.meta.get("shape") for n in module.graph.nodes)
        if isinstance(s, tuple) and len(s) == 4
    ]
    smallest = min((h for h, _ in spatial), default=height)
    stride = height // smallest if smallest and height % smallest == 0 else RESOLUTION_QUANTUM
    error = ""
    for quantum in dict.fromkeys((RESOLUTION_QUANTUM, stride)):
        shape = (
            channels,
            scale_resolution(height, factor, quantum),
            scale_resolution(width, factor, quantum),
        )
        if shape == input_shape:
            return shape, []
        failed = propagate_or_node(module, (1, *shape))
        if failed is None:
            return shape, []
        error = f"it does not run at {shape[1]}x{shape[2]} (node {failed.name})"
    propagate_shapes(module, (1, *input_shape))
    return input_shape, [f"resolution: kept {height}x{width}: {error}"]


def _stage_summary(
    module: fx.GraphModule, stages: list[Stage], depths: list[int], shape: tuple
) -> Architecture:
    nodes = {node.name: node for node in module.graph.nodes}
    modules = dict(module.named_modules())
    widths, group_widths = [], []
    for stage, depth in zip(stages, depths):
        widths.append(nodes[stage.output_name].meta["shape"][1])
        unit = stage.units[min(depth, len(stage.units)) - 1]
        found = [
            group_width_of(modules[n.target])
            for n in unit.nodes
            if n.op == "call_module" and n.target in modules
        ]
        group_widths.append(next((g for g in found if g is not None), None))
    grouped = any(g is not None for g in group_widths)
    return Architecture(
        depths=tuple(depths),
        widths=tuple(widths),
        resolution=resolution_of(shape),
        group_widths=tuple(group_widths) if grouped else None,
        stages=tuple(s.name for s in stages),
    )


def _width_notes(analysis: ChannelAnalysis) -> list[str]:
    """One line per reason that kept channels that would have scaled."""
    algebra, by_reason = analysis.algebra, {}
    for root, members in algebra.members().items():
        reason = algebra.reasons.get(root)
        if reason and not reason.endswith(_EXPECTED) and any(algebra.kinds[m] is Kind.FREE for m in members):
            by_reason.setdefault(reason, []).append(algebra.origins[root])
    return [
        f"width: kept the channels of {', '.join(sorted(set(o))[:3])}: {reason}"
        for reason, o in by_reason.items()
    ]


def _shapes(module: fx.GraphModule) -> dict[fx.Node, tuple]:
    return {node: (node.meta.get("shape"), node.meta.get("dtype")) for node in module.graph.nodes}


def _restore(saved: dict[fx.Node, tuple]) -> None:
    for node, (shape, dtype) in saved.items():
        node.meta["shape"], node.meta["dtype"] = shape, dtype


class WidthScaler:
    """Width scaling of one graph in place, with retries: a node whose rebuild does not propagate is made opaque
    (its channels kept) and the analysis redone. ``attempt`` tries a multiplier and leaves it applied; ``undo``
    takes it back (shapes included), so several multipliers can be tried on one analysis."""

    def __init__(self, module: fx.GraphModule, shape: tuple[int, ...]) -> None:
        self.module, self.shape = module, shape
        self.opaque: set[str] = set()
        self.saved = _shapes(module)
        self.analysis = analyze_channels(module)
        self.edit: WidthEdit | None = None

    def attempt(self, width: float, group: float, device: str | None = None) -> list[str] | None:
        """Apply ``width`` / ``group``; the notes, or None when no attempt propagated."""
        for _ in range(MAX_RETRIES):
            plan = plan_widths(self.analysis, width, group)
            expected = expected_sizes(self.analysis, plan)
            self.edit = apply_widths(self.analysis, plan, device)
            failed = propagate_or_node(self.module, self.shape) or check_sizes(self.module, expected)
            if failed is None:
                return _width_notes(self.analysis) + plan.warnings
            self.undo()
            if failed.name in self.opaque:
                break
            self.opaque.add(failed.name)
            self.analysis = analyze_channels(self.module, frozenset(self.opaque))
        return None

    def undo(self) -> None:
        if self.edit is not None:
            self.edit.undo()
            self.edit = None
        _restore(self.saved)


def _group_factor(factors: ScalingFactors, width: float) -> float:
    """The group-width multiplier that goes with width multiplier ``width`` (corrected like it, when it scales)."""
    return factors.group * width / factors.width if factors.group != 1.0 else 1.0


def matched_width(scaler: WidthScaler, factors: ScalingFactors, target_flops: float) -> float:
    """The width multiplier whose planned flops come closest to ``target_flops``: ``w <- w * sqrt(target /
    planned)`` from the rule's ``w``, a few steps, the best kept (plans are costed without rebuilding)."""
    width, best = factors.width, (math.inf, factors.width)
    for _ in range(MATCH_STEPS):
        plan = plan_widths(scaler.analysis, width, _group_factor(factors, width))
        flops = planned_flops(scaler.analysis, plan)
        error = abs(math.log(flops / target_flops))
        best = min(best, (error, width))
        if error < MATCH_TOLERANCE:
            break
        width *= math.sqrt(target_flops / flops)
    return best[1]


def scale_graph(
    model: nn.Module,
    factors: ScalingFactors,
    input_shape: Sequence[int],
    leaf_modules: Sequence[type[nn.Module]] = (),
    match_flops: bool = True,
) -> GraphScaling:
    """Scale a copy of ``model`` (any fx-traceable module) by ``factors`` at input (C, H, W).

    ``match_flops``: the rounding of depth (a stage of 2 blocks stays at 2 until ``d >= 1.25``), of resolution
    and of small widths, and layers that cannot grow (the input, the classifier), can leave the realized flops
    more than 15% under ``s`` (ResNet-18 at 8x: ``test_scaling_zoo``); with ``match_flops`` the width
    multiplier (and the group-width multiplier with it) is corrected so that flops grow by ``s``; the multiplier
    used is in ``notes``. Without it, the rule's ``w`` is used as is.
    """
    input_shape = tuple(input_shape)
    module = capture(copy.deepcopy(model), input_shape, batch_size=ANALYSIS_BATCH, leaf_modules=leaf_modules)
    base_flops = count(module).flops
    new_shape, notes = choose_resolution(module, input_shape, factors.resolution)
    propagate_shapes(module, (ANALYSIS_BATCH, *input_shape))
    stages, stage_notes = find_stages(module)
    if not stages and factors.depth != 1.0:
        stage_notes.append("depth: no repeated blocks found (no stage to deepen or shorten)")
    before = _stage_summary(module, stages, [len(s.units) for s in stages], input_shape)
    depths = before.depths
    if factors.depth != 1.0:
        depths, depth_notes = scale_depths(module, stages, factors.depth)
        stage_notes += depth_notes
    shape = (ANALYSIS_BATCH, *new_shape)
    propagate_shapes(module, shape)
    if factors.width != 1.0 or factors.group != 1.0:
        scaler = WidthScaler(module, shape)
        width = factors.width
        if match_flops and factors.width != 1.0:
            width = matched_width(scaler, factors, base_flops * factors.factor)
            if width != factors.width:
                notes.append(
                    f"width: multiplier {width:.4f} instead of the rule's {factors.width:.4f}, so that flops "
                    f"grow by {factors.factor:g}x despite rounding (match_flops)"
                )
        width_notes = scaler.attempt(width, _group_factor(factors, width))
        notes += (
            width_notes if width_notes is not None else ["width: not scaled: the rebuilt graph does not run"]
        )
    module.meta.pop("input_shape", None)
    module = capture(module, new_shape)
    after = _stage_summary(module, stages, list(depths), new_shape)
    return GraphScaling(module, new_shape, before, after, stage_notes + notes)
