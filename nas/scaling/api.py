"""``scale_model``: one entry point for parametric (built-in families) and graph-level (any model) scaling.

scaled = scale_model(build_model("regnet:RegNetY-4.0GF"), factor=4, rule="dWr")
scaled.module, scaled.input_shape      # the scaled model and its input (C, H, W)
scaled.after.depths, scaled.notes      # the new architecture; what could not be scaled and why
scaled.costs()                         # before / after flops, params, acts and their ratios
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import NasError
from ..models import DEFAULT_INPUT_SHAPE, BuiltModel
from .architecture import Architecture
from .graph_scaling import scale_graph
from .parametric import FamilyScaler, get_scaler, with_input_shape
from .rules import ScalingFactors, parse_rule, scaling_factors

METHODS = ("auto", "parametric", "graph")


@dataclass
class ScaledModel:
    """A scaled model: ``module`` takes inputs of ``input_shape``; ``before`` / ``after`` summarize the
    architecture; ``notes`` say what could not be scaled and why; ``config`` is the scaled family parameters
    (parametric scaling) or None."""

    module: nn.Module
    input_shape: tuple[int, int, int]
    rule: str
    factor: float
    factors: ScalingFactors
    method: str
    before: Architecture
    after: Architecture
    notes: list[str] = field(default_factory=list)
    config: Any = None
    base_module: nn.Module | None = field(default=None, repr=False)
    base_input_shape: tuple[int, int, int] | None = None

    def costs(self) -> dict[str, dict[str, float]]:
        """``before`` / ``after`` flops, params and acts (nas.cost conventions) and their ``ratios``."""
        from ..cost import count
        from ..graph.capture import capture

        after = count(capture(self.module, self.input_shape)).totals()
        result: dict[str, dict[str, float]] = {"after": _costs(after)}
        if self.base_module is not None:
            before = _costs(count(capture(self.base_module, self.base_input_shape)).totals())
            result = {"before": before, **result}
            result["ratios"] = {key: after[key] / before[key] for key in before if before[key]}
        return result

    def summary(self) -> dict[str, Any]:
        """JSON-ready: factor, rule, method, factors, input shape, the new architecture (depths, widths, group
        widths, resolution) and the old one, notes."""
        return {
            "factor": self.factor,
            "rule": self.rule,
            "method": self.method,
            "factors": self.factors.as_dict(),
            "input_shape": list(self.input_shape),
            **self.after.as_dict(),
            "architecture_before": self.before.as_dict(),
            "notes": list(self.notes),
        }


def _costs(totals: dict[str, int]) -> dict[str, int]:
    return {key: totals[key] for key in ("flops", "params", "acts")}


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def scale_model(
    model: BuiltModel | nn.Module,
    factor: float,
    rule: str = "dWr",
    input_shape: Sequence[int] | None = None,
    *,
    method: str = "auto",
    materialize: bool = True,
    seed: int | None = 0,
    match_flops: bool = True,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> ScaledModel:
    """Scale ``model`` so that its flops grow by ``factor`` following ``rule`` (``rules.parse_rule``).

    ``method``: ``parametric`` rescales a built-in family's parameters as pycls does and rebuilds (exact);
    ``graph`` scales the captured graph of any model (``graph_scaling``); ``auto`` picks parametric when the
    model is a BuiltModel of a family with a scaler. ``input_shape`` (C, H, W) defaults to the family's, else
    3x224x224. ``materialize=False`` builds a parametric result on the meta device (costs only, no weights).
    ``seed`` seeds the fresh initialization (None: the global RNG). ``match_flops`` (graph-level only): correct
    the width multiplier so realized flops grow by ``factor``.
    """
    if method not in METHODS:
        raise NasError(f"scaling method {method!r}: expected one of {', '.join(METHODS)}")
    parsed = parse_rule(rule)
    factors = scaling_factors(parsed, factor)
    built = model if isinstance(model, BuiltModel) else None
    module = built.module if built is not None else model
    scaler = get_scaler(built.config) if built is not None and built.config is not None else None
    if method == "parametric" and scaler is None:
        raise NasError(
            "parametric scaling needs a built-in family model (e.g. regnet:RegNetY-4.0GF); use --method graph"
        )
    if scaler is not None and method != "graph":
        return _parametric(built, scaler, parsed.name, factors, input_shape, materialize, seed)
    shape = tuple(input_shape or (built.input_shape if built is not None else None) or DEFAULT_INPUT_SHAPE)
    with _seeded(seed):
        result = scale_graph(module, factors, shape, leaf_modules, match_flops)
    return ScaledModel(
        result.module,
        result.input_shape,
        parsed.name,
        float(factor),
        factors,
        "graph",
        result.before,
        result.after,
        result.notes,
        base_module=module,
        base_input_shape=shape,
    )


def _parametric(
    built: BuiltModel,
    scaler: FamilyScaler,
    rule: str,
    factors: ScalingFactors,
    input_shape: Sequence[int] | None,
    materialize: bool,
    seed: int | None,
) -> ScaledModel:
    params = built.config
    base_module, base_shape = built.module, tuple(built.input_shape)
    if input_shape is not None and tuple(input_shape) != base_shape:
        try:
            params = with_input_shape(params, tuple(input_shape))
        except ValueError as error:
            raise NasError(f"model {built.reference}: {error}") from None
        base_shape = tuple(input_shape)
        with torch.device("meta"):  # the base at that input, for cost comparisons only
            base_module = scaler.build(params)
    scaled = scaler.scale(params, factors)
    out_scaler = get_scaler(scaled)
    with _seeded(seed), contextlib.nullcontext() if materialize else torch.device("meta"):
        module = out_scaler.build(scaled)
    channels = getattr(scaled, "in_channels", base_shape[0])
    shape = (channels, scaled.resolution, scaled.resolution)
    before = scaler.describe(params)
    notes = [scaler.note] if scaler.note else []
    return ScaledModel(
        module,
        shape,
        rule,
        factors.factor,
        factors,
        "parametric",
        before,
        out_scaler.describe(scaled),
        notes,
        config=scaled,
        base_module=base_module,
        base_input_shape=base_shape,
    )
