"""The trial pipeline, one code path for every backend:

sample (the backend) -> build -> scale -> rewrite -> cost -> constraints (infeasible: stop, never trained)
-> train -> evaluate -> latency -> record.

Per trial it keeps, in ``trial_dir``: ``candidate.json``, ``metrics.json``, ``weights.pt`` (a state dict, loadable
with ``weights_only=True``) and ``log.txt``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .candidate import BuiltCandidate, Candidate, build_candidate
from .cost import count
from .graph.collapse import collapse_operators
from .latency import LatencySettings, measure_latency, resolve_device
from .space.schema import Space
from .train import DeviceData, TrainCheckpoint, TrainPlan, to_device, train

UNTRAINED_VALUE = {"accuracy": 0.0, "psnr": 0.0, "ssim": 0.0, "loss": 1e9}


@dataclass
class TrialOutcome:
    state: str  # complete | infeasible
    metrics: dict[str, Any]
    values: list[float]
    constraints: list[float]  # Optuna's convention: <= 0 feasible


@dataclass
class TrialContext:
    """What every trial of a study shares in one process: the space, the data on the device."""

    space: Space
    device: torch.device
    train_data: DeviceData
    val_data: DeviceData
    info: Any  # nas.data.DatasetInfo
    threads: int | None = None
    resized: dict[tuple[int, ...], tuple[DeviceData, DeviceData]] = field(default_factory=dict)

    @staticmethod
    def create(space: Space, threads: int | None = None) -> TrialContext:
        from .data import DataConfig, load_data

        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(space.train.device)
        config = DataConfig(
            space.data.name,
            space.data.root,
            space.data.val_fraction,
            space.data.seed,
            dict(space.data.options),
        )
        train_set, val_set, info = load_data(config, tuple(space.model.input) if space.model.input else None)
        return TrialContext(
            space, device, to_device(train_set, device), to_device(val_set, device), info, threads
        )

    def data_for(self, input_shape: tuple[int, ...]) -> tuple[DeviceData, DeviceData]:
        """The data at a model's input resolution (scaling may change it): resized once, then cached."""
        if tuple(input_shape) == tuple(self.info.input_shape):
            return self.train_data, self.val_data
        if input_shape[0] != self.info.input_shape[0]:
            raise ValueError(
                f"the model takes {input_shape[0]} channels, the data has {self.info.input_shape[0]}"
            )
        if input_shape not in self.resized:
            size = tuple(input_shape[1:])
            self.resized[input_shape] = tuple(
                DeviceData(
                    _resize(d.inputs, size),
                    _resize(d.targets, size) if self.info.task == "denoising" else d.targets,
                    d.augment,
                )
                for d in (self.train_data, self.val_data)
            )
        return self.resized[input_shape]

    def plan(self) -> TrainPlan:
        settings = self.space.train
        cuda = self.device.type == "cuda"
        return TrainPlan(
            settings=settings,
            task=self.info.task,
            device=self.device,
            amp=cuda if settings.amp is None else settings.amp and cuda,
            channels_last=cuda if settings.channels_last is None else settings.channels_last,
            seed=settings.seed,
        )


def _resize(images: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(N, C, H, W) images resized to ``size`` (bilinear, antialiased when shrinking)."""
    return torch.nn.functional.interpolate(
        images, size=size, mode="bilinear", antialias=True, align_corners=False
    )


class TrialLog:
    def __init__(
        self, path: Path | None, echo: Callable[[str], None] | None = None, append: bool = False
    ) -> None:
        self.path, self.echo = path, echo
        self.started = time.perf_counter()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not append or not path.exists():
                path.write_text("")

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.started:7.2f}s] {message}"
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(line + "\n")
        if self.echo is not None:
            self.echo(message)


EpochReporter = Callable[[int, dict[str, float]], None]  # (epoch, the costs and that epoch's metrics)


class StopTraining(Exception):
    """Raised by an ``on_epoch`` reporter to end a trial early on purpose (early stopping): logged as stopped."""


def _violations(space: Space, metrics: dict[str, Any], known_only: bool) -> list[float]:
    out = []
    for constraint in space.constraints:
        value = metrics.get(constraint.metric)
        if value is None:
            out.append(0.0 if known_only else 1.0)  # unknown after training: treat as violated
        else:
            out.append(constraint.violation(float(value)))
    return out


def _latency(space: Space, built: BuiltCandidate) -> dict[str, Any]:
    settings = LatencySettings(
        device=space.latency.device,
        batch_size=space.latency.batch_size,
        threads=space.latency.threads,
        min_run_time=space.latency.min_run_time,
    )
    return measure_latency(collapse_operators(built.module), built.input_shape, settings).as_dict()


def save_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def run_trial(
    context: TrialContext,
    candidate: Candidate,
    trial_dir: Path | None,
    on_epoch: EpochReporter | None = None,
    echo: Callable[[str], None] | None = None,
    checkpoint: TrainCheckpoint | None = None,
    initialize: Callable[[torch.nn.Module], None] | None = None,
) -> TrialOutcome:
    """Run one candidate; raises on failure (the backend records it) after writing the reason to the log.
    ``checkpoint``: resume training from (and save to) it, see ``nas.train.train``; the log then keeps what an
    interrupted attempt wrote. ``initialize(module)``: called on the built model before training (e.g. to load
    weights; a checkpoint's state replaces them)."""
    log = TrialLog(trial_dir / "log.txt" if trial_dir else None, echo, append=checkpoint is not None)
    if trial_dir is not None:
        save_json(trial_dir / "candidate.json", candidate.to_dict())
    try:
        return _run(context, candidate, trial_dir, on_epoch, log, checkpoint, initialize)
    except BaseException as error:
        stopped = isinstance(error, StopTraining)
        log(f"stopped: {error}" if stopped else f"failed: {type(error).__name__}: {error}")
        raise


def _run(
    context: TrialContext,
    candidate: Candidate,
    trial_dir: Path | None,
    on_epoch: EpochReporter | None,
    log: TrialLog,
    checkpoint: TrainCheckpoint | None = None,
    initialize: Callable[[torch.nn.Module], None] | None = None,
) -> TrialOutcome:
    space = context.space
    log(f"candidate: scale {candidate.scale}, {candidate.operator_mix() or 'no operators'}")
    built = build_candidate(space, candidate, space.train.seed, context.info.input_shape)
    if initialize is not None:
        initialize(built.module)
    if built.rewrite is not None:
        log(f"rewritten {len(built.rewrite.rewritten)} convs; skipped {len(built.rewrite.skipped)}")
        for node, reason in built.rewrite.skipped.items():
            log(f"  kept {node} as a plain conv: {reason}")
    for note in built.scale_notes:
        log(f"scaling: {note}")
    cost = count(built.module)
    metrics: dict[str, Any] = {
        **cost.totals(),
        "training_params": cost.training_params,
        "input_shape": list(built.input_shape),
    }
    if built.rewrite is not None:
        metrics["rewritten"] = len(built.rewrite.rewritten)
    if built.architecture:
        metrics["architecture"] = built.architecture
    if space.needs_latency():
        metrics.update(_latency(space, built))
    log(f"costs: flops {cost.flops:,}  params {cost.params:,}  acts {cost.acts:,}")

    violations = _violations(space, metrics, known_only=True)
    if any(v > 0 for v in violations):
        log(
            "infeasible before training: "
            + ", ".join(
                f"{c.metric}={metrics[c.metric]:.4g} (min {c.min}, max {c.max})"
                for c, v in zip(space.constraints, violations)
                if v > 0
            )
        )
        values = [float(metrics.get(o.metric, UNTRAINED_VALUE.get(o.metric, 0.0))) for o in space.objectives]
        metrics["infeasible"] = True
        _save(trial_dir, metrics, None)
        return TrialOutcome("infeasible", metrics, values, violations)

    known = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}  # costs: exact before training

    def report(epoch: int, epoch_metrics: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in epoch_metrics.items())
        log(f"epoch {epoch}/{space.train.epochs}: {shown}")
        if on_epoch is not None:
            on_epoch(epoch, {**known, **epoch_metrics})

    train_data, val_data = context.data_for(tuple(built.input_shape))
    logged = _LoggedCheckpoint(checkpoint, log) if checkpoint is not None else None
    trained = train(built.module, train_data, val_data, context.plan(), report, logged)
    metrics.update(trained)
    violations = _violations(space, metrics, known_only=False)
    values = [float(metrics[o.metric]) for o in space.objectives]
    if any(not math.isfinite(v) for v in values):
        raise FloatingPointError(f"objective values are not finite: {values}")
    _save(trial_dir, metrics, built)
    log("done: " + "  ".join(f"{o.metric} {v:.4g}" for o, v in zip(space.objectives, values)))
    return TrialOutcome("complete", metrics, values, violations)


class _LoggedCheckpoint:
    """A training checkpoint that notes in the trial's log when training resumes from it."""

    def __init__(self, inner: TrainCheckpoint, log: TrialLog) -> None:
        self.inner, self.log = inner, log

    def load(self) -> dict[str, Any] | None:
        state = self.inner.load()
        if state is not None:
            self.log(f"resumed from the checkpoint of epoch {state['epoch']}")
        return state

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        self.inner.save(epoch, state)


def _save(trial_dir: Path | None, metrics: dict[str, Any], built: BuiltCandidate | None) -> None:
    if trial_dir is None:
        return
    if built is not None:
        state = {k: v.detach().cpu() for k, v in built.module.state_dict().items()}
        tmp = trial_dir / "weights.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(trial_dir / "weights.pt")
    save_json(trial_dir / "metrics.json", metrics)
