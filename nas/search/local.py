"""The local backend: an Optuna study in this process (or ``search.parallel`` worker processes on one storage).

A trial that raises (exception, NaN loss, out of memory) is recorded as failed with its reason and the study
goes on. Ctrl-C marks the running trial failed ("interrupted") and stops; the same command resumes. With
``search.early_stopping`` a trial may be stopped at a rung (``early_stopping``): PRUNED with its partial metrics
and ``stopped_at_epoch``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from ..space.schema import Space
from ..trial import TrialContext, TrialOutcome, run_trial, save_json
from .baselines import describe_enqueued, enqueue_baselines
from .early_stopping import STOPPED_AT, EarlyStopped, RungLedger
from .early_stopping import describe as describe_early_stopping
from .progress import SearchProgress
from .sampling import SearchPlan, make_pruner, make_sampler, suggest_candidate
from .study import (
    check_or_write_space,
    finished_count,
    open_storage,
    open_study,
    owner_attrs,
    recover_interrupted,
    trial_dir,
)


def describe_error(error: BaseException) -> str:
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower():
        return f"out of memory: {str(error).splitlines()[0][:200]}"
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}"[:500]


@dataclass
class Objective:
    """The Optuna objective: sample a candidate, run the trial pipeline, record everything on the trial."""

    space: Space
    study_dir: Path
    context: TrialContext
    plan: SearchPlan
    progress: SearchProgress | None = None

    def __call__(self, trial: optuna.Trial) -> Any:
        for key, value in owner_attrs().items():
            trial.set_user_attr(key, value)
        candidate = suggest_candidate(trial, self.plan)
        trial.set_user_attr("candidate", candidate.to_dict())
        if self.progress:
            self.progress.trial_started(
                trial.number, f"scale {candidate.scale:g}, {candidate.operator_mix()}"
            )
        single = len(self.space.objectives) == 1
        prune = self.space.search.pruner != "none" and single
        ledger = RungLedger.for_trial(trial, self.space) if self.space.search.early_stopping else None
        metric = self.space.objectives[0].metric
        folder = trial_dir(self.study_dir, trial.number)

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            trial.set_user_attr("heartbeat", time.time())
            if self.progress:
                self.progress.epoch(trial.number, epoch, self.space.train.epochs, metrics)
            if single and (prune or ledger) and metric in metrics:  # TPE ranks a stopped trial by it
                trial.report(float(metrics[metric]), epoch)
                if prune and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            if ledger is not None:
                ledger.check(trial._trial_id, epoch, metrics)

        try:
            outcome = run_trial(self.context, candidate, folder, on_epoch)
        except optuna.TrialPruned:
            trial.set_user_attr("pruned", True)
            raise
        except EarlyStopped as stop:
            save_json(folder / "metrics.json", stop.metrics)
            record_stopped(trial, stop.metrics)
            raise optuna.TrialPruned(str(stop)) from None
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted by the user")
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as error:
            trial.set_user_attr("error", describe_error(error))
            if self.context.device.type == "cuda":
                torch.cuda.empty_cache()
            raise
        return record_outcome(trial, self.space, outcome)


def record_outcome(trial: optuna.Trial, space: Space, outcome: TrialOutcome) -> float | list[float]:
    """Put a finished trial's metrics, constraints and feasibility on its Optuna trial (every backend); returns
    the objective value(s) to tell Optuna."""
    trial.set_user_attr("metrics", _jsonable(outcome.metrics))
    for key, value in flat_metrics(outcome.metrics).items():  # columns for trials_dataframe() and dashboards
        trial.set_user_attr(key, value)
    trial.set_user_attr("constraints", outcome.constraints)
    for constraint, violation in zip(space.constraints, outcome.constraints):
        trial.set_constraint(constraint.metric, violation)
    if outcome.state == "infeasible":
        trial.set_user_attr("infeasible", True)
    return outcome.values[0] if len(outcome.values) == 1 else outcome.values


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics (costs, quality, their uncertainties), each one its own user attr."""
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in RESERVED_ATTRS
    }


RESERVED_ATTRS = frozenset({"metrics", "constraints", "candidate", "infeasible", "error", "baseline"})


def record_stopped(trial: optuna.Trial, metrics: dict[str, Any]) -> None:
    """Put a trial stopped early (``early_stopping``) on its Optuna trial before it is told PRUNED (every
    backend): its partial metrics (``metrics``, with ``stopped_at_epoch``), ``stopped_at_epoch`` and ``pruned``."""
    trial.set_user_attr("metrics", _jsonable(metrics))
    for key, value in flat_metrics(metrics).items():
        trial.set_user_attr(key, value)
    trial.set_user_attr(STOPPED_AT, int(metrics[STOPPED_AT]))
    trial.set_user_attr("pruned", True)


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))
    }


def _threads_per_trial(parallel: int) -> int:
    return max(1, (os.cpu_count() or 1) // parallel)


def prepare(space: Space, study_dir: Path, storage_url: str | None = None) -> tuple[optuna.Study, list[int]]:
    """Create or resume the study: write/check the space snapshot, recover interrupted trials."""
    check_or_write_space(space, study_dir)
    storage = open_storage(space, study_dir, storage_url)
    study = open_study(space, storage, None, make_pruner(space))
    study.sampler = make_sampler(space, len(study.get_trials(deepcopy=False)))  # a resumed run draws anew
    retried = recover_interrupted(study, space.search.max_retries)
    return study, retried


def announce(
    progress: SearchProgress, space: Space, study: optuna.Study, summary: str, baselines: list[float]
) -> None:
    """The search's first lines (every backend): the budget and the summary, the baselines enqueued, the rungs."""
    progress.start(space.search.trials, finished_count(study), summary)
    if baselines:
        progress.line(describe_enqueued(baselines))
    if space.search.early_stopping is not None:
        progress.line(describe_early_stopping(space))


def run_local(
    space: Space, study_dir: Path, progress: SearchProgress, storage_url: str | None = None
) -> optuna.Study:
    """Run the study until ``search.trials`` trials are finished (or the timeout passes)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, retried = prepare(space, study_dir, storage_url)
    remaining = space.search.trials - finished_count(study)
    context = TrialContext.create(space, threads=_threads_per_trial(space.search.parallel))
    plan = SearchPlan.from_space(space, context.info.input_shape)
    baselines = enqueue_baselines(study, space, plan)
    summary = (
        f"{plan.size_summary()}; {context.info.train_size} "
        f"training / {context.info.val_size} validation samples on {context.device}"
    )
    announce(progress, space, study, summary, baselines)
    if retried:
        progress.line(f"retrying interrupted trials {retried}")
    if remaining <= 0:
        progress.line(f"all {space.search.trials} trials are finished (raise --trials to run more)")
        progress.stop()
        return study
    try:
        if space.search.parallel == 1:
            # the budget is the study's: another process on the same study counts too
            _optimize(
                study, space, study_dir, context, plan, progress, remaining, stop_at_total=space.search.trials
            )
        else:
            _optimize_parallel(space, study_dir, storage_url, progress, remaining)
    finally:
        progress.stop()
    return study


def _optimize(
    study: optuna.Study,
    space: Space,
    study_dir: Path,
    context: TrialContext,
    plan: SearchPlan,
    progress: SearchProgress | None,
    remaining: int,
    stop_at_total: int | None = None,
) -> None:
    objective = Objective(space, study_dir, context, plan, progress)
    callbacks = [progress.trial_finished] if progress else []
    if stop_at_total is not None:
        callbacks.append(_StopAtTotal(stop_at_total))
    study.optimize(
        objective,
        n_trials=remaining,
        timeout=space.search.timeout,
        catch=(Exception,),
        callbacks=callbacks,
        gc_after_trial=False,
    )


class _StopAtTotal:
    """Stop a worker when the finished trials plus those other workers are running reach the budget."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
        if finished_count(study) + running >= self.total:
            study.stop()


def _worker(
    space: Space, study_dir: str, storage_url: str | None, total: int, threads: int, worker: int
) -> None:
    try:
        _run_worker(space, study_dir, storage_url, total, threads, worker)
    except KeyboardInterrupt:  # the parent reports; the trial was marked interrupted
        pass


def _run_worker(
    space: Space, study_dir: str, storage_url: str | None, total: int, threads: int, worker: int
) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(threads)
    storage = open_storage(space, Path(study_dir), storage_url)
    study = open_study(space, storage, None, make_pruner(space))
    study.sampler = make_sampler(space, len(study.get_trials(deepcopy=False)), worker + 1)
    context = TrialContext.create(space, threads=threads)
    plan = SearchPlan.from_space(space, context.info.input_shape)
    remaining = total - finished_count(study)
    if remaining > 0:
        _optimize(study, space, Path(study_dir), context, plan, None, remaining, stop_at_total=total)


def _optimize_parallel(
    space: Space, study_dir: Path, storage_url: str | None, progress: SearchProgress, remaining: int
) -> None:
    """``search.parallel`` processes share the storage; this one reports finished trials as they land."""
    ctx = multiprocessing.get_context("spawn")
    total = space.search.trials
    threads = _threads_per_trial(space.search.parallel)
    workers = [
        ctx.Process(
            target=_worker, args=(space, str(study_dir), storage_url, total, threads, index), daemon=False
        )
        for index in range(min(space.search.parallel, remaining))
    ]
    for worker in workers:
        worker.start()
    study = optuna.load_study(study_name=space.name, storage=open_storage(space, study_dir, storage_url))
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    try:
        while any(w.is_alive() for w in workers):
            time.sleep(1.0)
            for trial in study.get_trials(deepcopy=False):
                if trial.state.is_finished() and trial.number not in seen:
                    seen.add(trial.number)
                    progress.trial_finished(study, trial)
    except KeyboardInterrupt:
        for worker in workers:
            worker.join(timeout=30)
        raise
    for worker in workers:
        worker.join()
    for trial in study.get_trials(deepcopy=False):
        if trial.state.is_finished() and trial.number not in seen:
            progress.trial_finished(study, trial)
