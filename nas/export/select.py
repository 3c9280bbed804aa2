"""Which trial of a study to export: ``--trial N``, ``--best METRIC``, ``--pareto-rank K`` or, by default, the
best Pareto trial by the first objective. A trial that cannot be exported (unknown, failed, pruned, stopped
early at a rung, still running, infeasible, or without saved weights) is a NasError naming the trial and why;
``--best`` and ``--pareto-rank`` choose among COMPLETE trials only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import NasError
from ..search.report import pareto_numbers, state_name
from ..search.study import load_existing_study, trial_dir
from ..space.schema import METRICS, Space

WEIGHTS_FILE = "weights.pt"


@dataclass
class SelectedTrial:
    space: Space
    study: optuna.Study
    trial: FrozenTrial
    directory: Path  # trials/<N>/
    candidate: dict[str, Any]
    metrics: dict[str, Any]
    reason: str  # how it was chosen, for humans

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS_FILE


def _feasible(trial: FrozenTrial) -> bool:
    return not trial.user_attrs.get("infeasible") and all(
        c <= 0 for c in trial.user_attrs.get("constraints", [])
    )


def _why_not(trial: FrozenTrial) -> str | None:
    """Why ``trial`` cannot be exported, or None."""
    state = state_name(trial)
    if state == "infeasible":
        return "is infeasible (it violates the space's constraints and was never trained)"
    if state in ("fail", "interrupted"):
        return f"failed ({trial.user_attrs.get('error') or 'no reason recorded'})"
    if state == "pruned":
        return "was pruned (stopped before the end of its training)"
    if state.startswith("stopped@"):
        epoch = trial.user_attrs["stopped_at_epoch"]
        return f"was stopped early at epoch {epoch} (search.early_stopping) and its weights were not kept"
    if state != "complete":
        return f"has not finished (state {state})"
    if not _feasible(trial):
        return f"violates the space's constraints after training (violations {trial.user_attrs.get('constraints')})"
    return None


def _metrics(trial: FrozenTrial, directory: Path) -> dict[str, Any]:
    metrics = trial.user_attrs.get("metrics")
    if metrics is None and (directory / "metrics.json").exists():
        metrics = json.loads((directory / "metrics.json").read_text())
    return dict(metrics or {})


def _direction(space: Space, metric: str) -> str:
    for objective in space.objectives:
        if objective.metric == metric:
            return objective.direction
    if metric not in METRICS:
        raise NasError(f"--best {metric!r}: unknown metric (known: {', '.join(METRICS)})")
    return METRICS[metric]


def _best_by(space: Space, study: optuna.Study, metric: str, study_dir: Path) -> tuple[FrozenTrial, str]:
    direction = _direction(space, metric)
    scored = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        value = _metrics(trial, trial_dir(study_dir, trial.number)).get(metric)
        if _feasible(trial) and isinstance(value, (int, float)):
            scored.append((float(value) if direction == "minimize" else -float(value), trial.number, trial))
    if not scored:
        raise NasError(f"{study_dir}: no completed, feasible trial has the metric {metric!r}")
    _, number, trial = min(scored, key=lambda item: item[:2])
    return trial, f"best {metric} ({direction})"


def _pareto(space: Space, study: optuna.Study, rank: int, study_dir: Path) -> tuple[FrozenTrial, str]:
    front = pareto_numbers(study)
    if not front:
        raise NasError(f"{study_dir}: no completed, feasible trial to export yet")
    first = space.objectives[0]
    sign = 1.0 if first.direction == "minimize" else -1.0
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    ordered = sorted(front, key=lambda number: (sign * trials[number].values[0], number))
    if not 1 <= rank <= len(ordered):
        raise NasError(
            f"--pareto-rank {rank}: the Pareto front of {study_dir} has {len(ordered)} trial(s) "
            f"({', '.join(map(str, ordered))})"
        )
    return trials[
        ordered[rank - 1]
    ], f"Pareto rank {rank} of {len(ordered)} by {first.metric} ({first.direction})"


def select_trial(
    study_dir: Path,
    *,
    trial: int | None = None,
    best: str | None = None,
    pareto_rank: int | None = None,
    storage_url: str | None = None,
) -> SelectedTrial:
    """The trial to export (at most one of ``trial``, ``best``, ``pareto_rank``; none: Pareto rank 1)."""
    if sum(option is not None for option in (trial, best, pareto_rank)) > 1:
        raise NasError("choose one of --trial, --best and --pareto-rank")
    study_dir = Path(study_dir)
    space, study = load_existing_study(study_dir, storage_url)
    if trial is not None:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        if trial not in by_number:
            known = f"0..{max(by_number)}" if by_number else "none yet"
            raise NasError(f"trial {trial}: no such trial in {study_dir} (trials: {known})")
        chosen, reason = by_number[trial], f"trial {trial}"
    elif best is not None:
        chosen, reason = _best_by(space, study, best, study_dir)
    else:
        chosen, reason = _pareto(space, study, 1 if pareto_rank is None else pareto_rank, study_dir)
    why_not = _why_not(chosen)
    if why_not is not None:
        raise NasError(f"trial {chosen.number} of {study_dir} {why_not}; nothing to export")
    directory = trial_dir(study_dir, chosen.number)
    if not (directory / WEIGHTS_FILE).is_file():
        raise NasError(
            f"trial {chosen.number}: {directory / WEIGHTS_FILE} is missing (its trained weights were not saved "
            "or were removed)"
        )
    candidate = chosen.user_attrs.get("candidate")
    if candidate is None and (directory / "candidate.json").exists():
        candidate = json.loads((directory / "candidate.json").read_text())
    if candidate is None:
        raise NasError(
            f"trial {chosen.number}: no candidate recorded (neither in the study nor in {directory})"
        )
    return SelectedTrial(
        space, study, chosen, directory, dict(candidate), _metrics(chosen, directory), reason
    )
