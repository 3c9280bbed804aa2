"""Optuna as Ray Tune's searcher: ``OptunaSearch`` on the study's own storage, asking with the local backend's
define-by-run function (``suggest_candidate``), so both backends write the same study.

Multi-objective studies pass the metric and mode lists to ``OptunaSearch`` (not to ``TuneConfig``). The searcher
only asks; the driver's ``StudyRecorder`` tells Optuna how each trial ended, because ``OptunaSearch`` itself
would only log a NaN result and leave the trial RUNNING in a persistent storage.
"""

from __future__ import annotations

import pickle
import time
from functools import partial
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .ray_context import lookup
from .ray_trainable import trial_config
from .sampling import SearchPlan, suggest_candidate
from .study import owner_attrs

_UNPICKLED = ("_ot_study", "_storage", "_sampler", "_ot_trials")  # live handles, taken from the run instead


def define_trial(trial: optuna.Trial, plan: SearchPlan) -> dict[str, Any]:
    """OptunaSearch's define-by-run ``space``: sample a candidate and hand it to the Tune trial."""
    for key, value in owner_attrs().items():
        trial.set_user_attr(key, value)
    candidate = suggest_candidate(trial, plan)
    trial.set_user_attr("candidate", candidate.to_dict())
    return trial_config(trial.number, trial._trial_id, candidate)


class NasOptunaSearch(OptunaSearch):
    """``OptunaSearch`` on the run's study; stops handing out trials after ``search.timeout``."""

    def __init__(self, key: str, plan: SearchPlan) -> None:
        run = lookup(key)
        metrics = [o.metric for o in run.space.objectives]
        modes = ["max" if o.direction == "maximize" else "min" for o in run.space.objectives]
        single = len(metrics) == 1
        super().__init__(
            space=partial(define_trial, plan=plan),
            metric=metrics[0] if single else metrics,
            mode=modes[0] if single else modes,
            sampler=run.study.sampler,
            study_name=run.space.name,
            storage=run.study._storage,
        )
        self._key = key
        self._ot_study = run.study

    def suggest(self, trial_id: str) -> dict | str | None:
        run = lookup(self._key)
        if run.deadline is not None and time.time() > run.deadline:
            return Searcher.FINISHED
        self._ot_study = run.study
        config = super().suggest(trial_id)
        asked = self._ot_trials[trial_id]
        run.trials[asked._trial_id] = asked
        return config

    # The recorder tells Optuna; these only forget the asked trial.
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._ot_trials.pop(trial_id, None)
        self._completed_trials.add(trial_id)

    # Tune pickles the searcher into the experiment (tuner.pkl, searcher-state): keep it free of live handles.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ot_study, self._storage, self._sampler, self._ot_trials = None, None, None, {}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__setstate__(pickle.load(handle))
