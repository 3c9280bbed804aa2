"""The study directory and its Optuna storage.

    studies/<space name>/
        space.yaml        the space as run (overrides applied); a rerun must match it to resume
        journal.log       Optuna's journal storage (default; safe for several processes)
        trials/<N>/       candidate.json, metrics.json, weights.pt, log.txt of trial N
        report.*          tables and plots written by `nas report`

Resuming: finished trials are kept; a trial left RUNNING by a process that died is marked failed
("interrupted") and retried, at most ``search.max_retries`` times; numbering continues.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from ..errors import NasError
from ..space.schema import Space

JOURNAL = "journal.log"
SPACE_FILE = "space.yaml"
# Keys of the space that may change between runs of the same study (budget and placement, not the search).
RESUMABLE_CHANGES = {
    "search.trials",
    "search.timeout",
    "search.parallel",
    "train.device",
    "resources",
    "storage",
}


# User attrs a retry keeps from the trial it repeats (a baseline's retry is still the baseline).
CARRIED_BY_RETRIES = ("baseline", "baseline_scale")


def default_study_dir(space: Space) -> Path:
    return Path("studies") / space.name


def trial_dir(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / "trials" / str(number)


def comparable(space: Space) -> dict[str, Any]:
    """The space's settings as flat key paths (``train.epochs``), for comparing two runs of a study."""
    data = dataclasses.asdict(space)
    for key in ("source", "raw"):
        data.pop(key, None)
    return _flatten(data)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, (list, tuple)):
        return {prefix: [_flatten(v) if isinstance(v, dict) else v for v in data]}
    return {prefix: data}


def check_or_write_space(space: Space, study_dir: Path) -> None:
    """Write the space snapshot (the YAML as loaded, overrides applied), or check that a resumed study runs the
    same search (budget and placement may change)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / SPACE_FILE
    if path.exists():
        old, new = comparable(load_study_space(study_dir)), comparable(space)
        changed = sorted(
            k
            for k in set(old) | set(new)
            if old.get(k) != new.get(k)
            and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)
        )
        if changed:
            raise NasError(
                f"{study_dir} holds a study of a different space (changed: {', '.join(changed[:4])}); "
                f"choose another --study-dir or remove that directory"
            )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(dict(space.raw), sort_keys=False))
    tmp.replace(path)


def load_study_space(study_dir: Path) -> Space:
    from ..space.loader import load_space

    path = Path(study_dir) / SPACE_FILE
    if not path.exists():
        raise NasError(f"{study_dir}: not a study directory (no {SPACE_FILE}); run `nas search` first")
    return load_space(str(path))


def open_storage(
    space: Space, study_dir: Path, storage_url: str | None = None
) -> optuna.storages.BaseStorage:
    url = storage_url or space.storage
    if url:
        try:
            return optuna.storages.get_storage(url)
        except Exception as error:
            raise NasError(f"storage {url!r}: {type(error).__name__}: {str(error).splitlines()[0]}") from None
    study_dir.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(study_dir / JOURNAL))
    return optuna.storages.JournalStorage(backend)


def open_study(space: Space, storage: optuna.storages.BaseStorage, sampler=None, pruner=None) -> optuna.Study:
    """Create or load the study; its objectives carry the metrics' names (``accuracy``, ``flops``), so Optuna's
    CLI, ``trials_dataframe()`` and optuna-dashboard show them instead of ``values_0``."""
    study = optuna.create_study(
        study_name=space.name,
        storage=storage,
        directions=space.directions,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    names = [o.metric for o in space.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study


def load_existing_study(study_dir: Path, storage_url: str | None = None) -> tuple[Space, optuna.Study]:
    space = load_study_space(study_dir)
    storage = open_storage(space, Path(study_dir), storage_url)
    try:
        study = optuna.load_study(study_name=space.name, storage=storage)
    except KeyError:
        raise NasError(f"{study_dir}: its storage holds no study named {space.name!r}") from None
    return space, study


# -- ownership and recovery of running trials ---------------------------------------------------------------
def owner_attrs() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def _owner_alive(trial: optuna.trial.FrozenTrial, grace_seconds: float) -> bool:
    attrs = trial.user_attrs
    if attrs.get("host") == socket.gethostname() and "pid" in attrs:
        try:
            os.kill(int(attrs["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return int(attrs["pid"]) != os.getpid()
    return time.time() - float(attrs.get("heartbeat", 0)) < grace_seconds


def recover_interrupted(study: optuna.Study, max_retries: int, grace_seconds: float = 600.0) -> list[int]:
    """Mark trials whose process died as failed ("interrupted"), and enqueue their retries. Returns retried numbers."""
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _owner_alive(trial, grace_seconds):
            continue
        storage.set_trial_user_attr(trial._trial_id, "error", "interrupted: the process running it stopped")
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return enqueue_retries(study, max_retries)


def enqueue_retries(study: optuna.Study, max_retries: int) -> list[int]:
    trials = study.get_trials(deepcopy=False)
    already = {t.user_attrs.get("retry_of") for t in trials if "retry_of" in t.user_attrs}
    retried = []
    for trial in trials:
        if (
            trial.state != TrialState.FAIL
            or not trial.user_attrs.get("interrupted")
            or trial.number in already
        ):
            continue
        attempt = int(trial.user_attrs.get("attempt", 0)) + 1
        if attempt > max_retries:
            continue
        origin = trial.user_attrs.get("retry_of", trial.number)
        carried = {k: trial.user_attrs[k] for k in CARRIED_BY_RETRIES if k in trial.user_attrs}
        study.enqueue_trial(
            trial.params,
            user_attrs={**carried, "retry_of": trial.number, "attempt": attempt, "origin": origin},
            skip_if_exists=False,
        )
        retried.append(trial.number)
    return retried


def finished_count(study: optuna.Study) -> int:
    """Trials that count against the budget: complete, pruned, and failed ones that were not interrupted."""
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            count += 1
        elif trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted"):
            count += 1
    return count
