"""The search space file as frozen dataclasses. ``loader.py`` builds them from YAML; nothing below reads files.

A space file has the sections ``name``, ``model``, ``data``, ``train``, ``operators``, ``scaling``,
``objectives``, ``constraints``, ``search``, ``resources``, ``latency`` and ``storage``; see
``search_spaces/convops.yaml`` for a commented example.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .convert import SchemaError

# metric -> default direction. Cost metrics are known before training; the others come from evaluation.
METRICS: dict[str, str] = {
    "accuracy": "maximize",
    "psnr": "maximize",
    "ssim": "maximize",
    "loss": "minimize",
    "flops": "minimize",
    "macs": "minimize",
    "params": "minimize",
    "training_params": "minimize",
    "acts": "minimize",
    "latency_ms": "minimize",
}
MAX_INPUT_ELEMENTS = 2**26  # per sample (C*H*W): 3 x 4729 x 4729; larger inputs are a typo, not a CNN input
COST_METRICS = frozenset({"flops", "macs", "params", "training_params", "acts"})
TRAINED_METRICS = frozenset({"accuracy", "psnr", "ssim", "loss"})  # measured after every epoch of training


@dataclass(frozen=True)
class ModelSection:
    ref: str  # a model reference: FAMILY:CONFIG or package.module:callable
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input: tuple[int, int, int] | None = None  # (C, H, W); default: the family's, else the data's
    leaf_modules: tuple[str, ...] = ()  # package.module.Class kept as one node when tracing

    def __post_init__(self) -> None:
        if ":" not in self.ref:
            raise SchemaError("ref", f"expected FAMILY:CONFIG or package.module:callable, got {self.ref!r}")
        if self.input is not None and any(v <= 0 for v in self.input):
            raise SchemaError("input", f"expected three positive integers, got {list(self.input)}")
        if self.input is not None and math.prod(self.input) > MAX_INPUT_ELEMENTS:
            raise SchemaError(
                "input",
                f"{list(self.input)} is {math.prod(self.input):,} values per sample, over {MAX_INPUT_ELEMENTS:,}",
            )


@dataclass(frozen=True)
class DataSection:
    name: str = "digits"
    root: str | None = None
    val_fraction: float = 0.2
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise SchemaError("val_fraction", f"must be between 0 and 1, got {self.val_fraction}")


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 5
    batch_size: int = 64
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise SchemaError(name, f"must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SchemaError("lr", f"must be a finite number > 0, got {self.lr}")
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise SchemaError(name, f"must be a finite number >= 0, got {value}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise SchemaError("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= max(self.epochs, 1) and self.warmup_epochs:
            raise SchemaError("warmup_epochs", f"must be in [0, epochs), got {self.warmup_epochs}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise SchemaError("device", f"expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class ParamDomain:
    """What the search may pick for one operator parameter: fixed, a range, or choices."""

    fixed: Any = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "choices"
        return "range" if self.low is not None else "fixed"


@dataclass(frozen=True)
class OperatorChoice:
    name: str
    params: Mapping[str, ParamDomain] = field(
        default_factory=dict
    )  # unlisted parameters: the operator's range


@dataclass(frozen=True)
class TargetSection:
    """Which conv nodes the search may rewrite (all criteria must hold)."""

    names: tuple[str, ...] = ("*",)  # globs over module paths
    exclude: tuple[str, ...] = ()
    kernel_size: tuple[int, ...] = ()  # allowed kernel sizes (square); empty: any
    min_kernel_size: int = 1
    stride: tuple[int, ...] = ()
    depthwise: bool | None = None


@dataclass(frozen=True)
class OperatorsSection:
    targets: TargetSection = field(default_factory=TargetSection)
    granularity: Literal["node", "stage", "global"] = "stage"
    choices: tuple[OperatorChoice, ...] = (OperatorChoice("conv"),)


@dataclass(frozen=True)
class ScalingSection:
    rule: str = "dWr"
    factor: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.factor or any(not (f > 0 and math.isfinite(f)) for f in self.factor):
            raise SchemaError("factor", f"expected finite positive numbers, got {list(self.factor)}")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"] | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SchemaError("metric", f"unknown metric {self.metric!r} (known: {', '.join(METRICS)})")
        if self.direction is None:
            object.__setattr__(self, "direction", METRICS[self.metric])


@dataclass(frozen=True)
class Constraint:
    metric: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SchemaError("metric", f"unknown metric {self.metric!r} (known: {', '.join(METRICS)})")
        if self.min is None and self.max is None:
            raise SchemaError("", f"constraint on {self.metric} needs min or max")
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise SchemaError(name, f"must be a finite number, got {value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SchemaError(
                "", f"constraint on {self.metric}: min {self.min:g} > max {self.max:g}, nothing is feasible"
            )

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 feasible, > 0 by how much it is violated (relative)."""
        over = (value - self.max) / max(abs(self.max), 1e-12) if self.max is not None else float("-inf")
        under = (self.min - value) / max(abs(self.min), 1e-12) if self.min is not None else float("-inf")
        return max(over, under)


@dataclass(frozen=True)
class EarlyStoppingSection:
    """Asynchronous multi-objective successive halving (MO-ASHA, Schmucker et al. 2021): rungs at
    ``min_epochs * reduction_factor**k`` epochs; at a rung a trial goes on only if it ranks in the top
    ``1 / reduction_factor`` of the trials that reached it (non-dominated sorting on the quality at the rung and
    the exact costs)."""

    min_epochs: int = 1
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if self.min_epochs < 1:
            raise SchemaError("min_epochs", f"must be >= 1, got {self.min_epochs}")
        if self.reduction_factor < 2:
            raise SchemaError("reduction_factor", f"must be >= 2, got {self.reduction_factor}")


@dataclass(frozen=True)
class SearchSection:
    sampler: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    trials: int = 20
    timeout: float | None = None  # seconds for this run
    seed: int = 0
    parallel: int = 1  # trials at once (processes)
    pruner: Literal["none", "median", "hyperband"] = "none"  # single-objective studies only
    max_retries: int = 1  # retries of a trial interrupted by a crash
    startup_trials: int = 6  # random trials before the model-based sampler takes over
    early_stopping: EarlyStoppingSection | None = None  # MO-ASHA; null: every trial trains to the end
    baselines: bool = True  # enqueue the all-conv candidate at every scale factor first (the study's control)

    def __post_init__(self) -> None:
        if self.trials < 1 or self.parallel < 1 or self.max_retries < 0:
            raise SchemaError("", "trials and parallel must be >= 1, max_retries >= 0")


@dataclass(frozen=True)
class ResourcesSection:
    cpu: float = 1.0  # per trial (Ray); local: threads per trial = cores / parallel
    gpu: float = 0.0  # per trial (Ray; fractional allowed)


@dataclass(frozen=True)
class LatencySection:
    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None
    min_run_time: float = 0.3


@dataclass(frozen=True)
class Space:
    name: str
    model: ModelSection
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    operators: OperatorsSection = field(default_factory=OperatorsSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    objectives: tuple[Objective, ...] = (Objective("accuracy"),)
    constraints: tuple[Constraint, ...] = ()
    search: SearchSection = field(default_factory=SearchSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    latency: LatencySection = field(default_factory=LatencySection)
    storage: str | None = None  # an Optuna storage URL; default: a journal file in the study dir
    source: str = ""  # the file it came from (set by the loader)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the YAML data as loaded

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", self.name):
            raise SchemaError("name", f"use letters, digits, '_', '-' or '.' (not first), got {self.name!r}")
        if not self.objectives:
            raise SchemaError("objectives", "at least one objective is required")
        if self.search.pruner != "none" and len(self.objectives) > 1:
            raise SchemaError("search.pruner", "pruning needs a single-objective study (Optuna's pruners)")
        if self.search.early_stopping is not None:
            self._check_early_stopping()

    def _check_early_stopping(self) -> None:
        """MO-ASHA (any number of objectives; with one it is ASHA) replaces Optuna's pruners, never joins them,
        and ranks trials by what training measures: a space of cost objectives only has nothing to stop on."""
        if self.search.pruner != "none":
            raise SchemaError(
                "search.early_stopping",
                f"choose one of search.pruner ({self.search.pruner}) and search.early_stopping",
            )
        if not any(o.metric in TRAINED_METRICS for o in self.objectives):
            raise SchemaError(
                "search.early_stopping",
                f"needs an objective that training measures ({', '.join(sorted(TRAINED_METRICS))}); "
                "costs are known before training",
            )

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def needs_latency(self) -> bool:
        return any(o.metric == "latency_ms" for o in self.objectives) or any(
            c.metric == "latency_ms" for c in self.constraints
        )
