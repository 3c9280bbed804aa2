"""What the driver-side pieces of a Ray search share in one process: the space, the study, the progress display.

Ray Tune pickles the searcher, the scheduler and the callbacks into the experiment directory and unpickles them
when the experiment is restored. They keep only a key (the study directory) and look the run up here, so nothing
unpicklable (a storage connection, a live console) travels through Tune's state, and a restored experiment
records into this run's study and progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna

from ..space.schema import Space
from .progress import SearchProgress

NAS_KEY = "nas"  # the trial's config entry: Optuna trial number and id, the candidate
RECORD_KEY = "nas_record"  # the last result of a trial that ran to the end or was stopped at a rung, as JSON


@dataclass
class RayRun:
    space: Space
    study_dir: Path
    study: optuna.Study
    progress: SearchProgress | None = None
    deadline: float | None = None  # time.time() after which no trial starts (search.timeout)
    pruned: set[str] = field(default_factory=set)  # Tune trial ids the scheduler stopped early
    trials: dict[int, optuna.Trial] = field(default_factory=dict)  # storage trial id -> running trial
    running: set[str] = field(default_factory=set)  # Tune trial ids started and not ended
    cwd: str = "."  # the driver's working directory: the trials work there when their node has it
    storage_url: str | None = None  # --storage: the trials open it too (early stopping's rung ledger)


_RUNS: dict[str, RayRun] = {}


def register(run: RayRun) -> str:
    key = str(Path(run.study_dir).resolve())
    _RUNS[key] = run
    return key


def unregister(key: str) -> None:
    _RUNS.pop(key, None)


def lookup(key: str) -> RayRun:
    try:
        return _RUNS[key]
    except KeyError:
        raise RuntimeError(f"no Ray search of study {key} runs in this process") from None


def optuna_number(config: dict) -> int:
    return int(config[NAS_KEY]["number"])
