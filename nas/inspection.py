"""Inspect a model: build it from a reference, capture it, optionally rewrite it with an operator, count it.

This is what ``nas inspect`` shows; the CLI only formats the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .cost import CostReport, count
from .graph import RewriteResult, capture, conv_nodes, rewrite_with_operator
from .graph.collapse import collapse_operators
from .latency import Latency, LatencySettings, measure_latency
from .models import DEFAULT_INPUT_SHAPE, BuiltModel, build_model


@dataclass
class Analysis:
    model: BuiltModel
    module: fx.GraphModule
    input_shape: tuple[int, ...]
    cost: CostReport
    rewrite: RewriteResult | None = None
    max_abs_diff: float | None = None
    latency: Latency | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        by_name = self.cost.by_name()
        convs = []
        for conv in conv_nodes(self.module):
            cost = by_name.get(conv.name)
            spec = conv.spec
            convs.append(
                dict(
                    name=conv.name,
                    type=conv.module_type,
                    in_channels=spec.in_channels,
                    out_channels=spec.out_channels,
                    kernel_size=list(spec.kernel_size),
                    stride=list(spec.stride),
                    groups=spec.groups,
                    output_shape=list(conv.output_shape),
                    flops=cost.flops if cost else 0,
                    acts=cost.acts if cost else 0,
                )
            )
        out: dict[str, Any] = dict(
            model=self.model.reference,
            input_shape=list(self.input_shape),
            params=self.cost.params,
            training_params=self.cost.training_params,
            macs=self.cost.macs,
            flops=self.cost.flops,
            acts=self.cost.acts,
            unknown_ops=self.cost.unknown_ops,
            convs=convs,
        )
        if self.rewrite is not None:
            out.update(rewritten=len(self.rewrite.rewritten), skipped=self.rewrite.skipped)
        if self.max_abs_diff is not None:
            out["max_abs_diff"] = self.max_abs_diff
        if self.latency is not None:
            out.update(self.latency.as_dict())
        out.update(self.extra)
        return out


def check_collapse(module: nn.Module, input_shape: Sequence[int], seed: int = 0) -> float:
    """Max |operator model - collapsed model| in eval mode on a random input (float64 where possible).

    The operator model runs with autograd on, as in training, so every operator computes its output from its
    parameters (branches, taps, low-rank factors) rather than reusing, as inference under ``no_grad`` does, the very
    kernel its collapse copies."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *input_shape, generator=generator)
    was_training = module.training
    module.eval()
    try:
        collapsed = collapse_operators(module)
        with torch.enable_grad():
            y = module(x).detach()
        with torch.no_grad():
            return float((y - collapsed(x)).abs().max())
    finally:
        module.train(was_training)


def analyze(
    reference: str,
    *,
    model_kwargs: dict[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    operator: tuple[str, dict[str, Any]] | None = None,
    check: bool = False,
    latency: LatencySettings | None = None,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> Analysis:
    built = build_model(reference, model_kwargs)
    shape = tuple(input_shape or built.input_shape or DEFAULT_INPUT_SHAPE)
    module = capture(built.module, shape, leaf_modules=leaf_modules)
    result = rewrite_with_operator(module, operator[0], operator[1]) if operator else None
    analysis = Analysis(built, module, shape, count(module), result)
    if check:
        analysis.max_abs_diff = check_collapse(module, shape)
    if latency is not None:
        analysis.latency = measure_latency(collapse_operators(module), shape, latency)
    return analysis
