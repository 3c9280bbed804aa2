"""The driver's record of a Ray search: Tune's trial events become the same Optuna study the local backend writes
(user attrs ``candidate``, ``metrics``, ``constraints``, ``infeasible``, ``error``; constraints through
``Trial.set_constraint``), and lines on the progress display.

How a Tune trial ends -> its Optuna trial:
- its last result carries the outcome (``RECORD_KEY``): COMPLETE (values told; infeasible ones flagged), or FAIL
  with the pipeline's error (exception, NaN, out of memory); non-finite values are FAIL, never left RUNNING;
- stopped at a rung by early stopping (its outcome says "stopped"): PRUNED, user attrs ``pruned``,
  ``stopped_at_epoch`` and ``metrics`` (those of that epoch), as the local backend records it;
- stopped early by the scheduler (ASHA): PRUNED, user attr ``pruned``;
- stopped for another reason before it finished: FAIL, ``interrupted`` (retried when the command runs again);
- its worker died more often than ``search.max_retries`` allows: FAIL with Ray's reason.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial as TuneTrial

from ..candidate import Candidate
from ..trial import TrialOutcome
from .local import describe_error, record_outcome, record_stopped
from .ray_context import NAS_KEY, RECORD_KEY, RayRun, lookup, optuna_number
from .study import owner_attrs

PROGRESS_KEYS = ("accuracy", "psnr", "ssim", "loss", "train_loss")


class StudyRecorder(tune.Callback):
    def __init__(self, key: str) -> None:
        self.key = key

    # -- Tune's events --------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: TuneTrial, **info: Any) -> None:
        run, optuna_trial = self._live(trial)
        run.running.add(trial.trial_id)
        if optuna_trial is None:
            return
        for key, value in owner_attrs().items():  # this driver owns it now (also after a restore)
            optuna_trial.set_user_attr(key, value)
        if run.progress:
            candidate = Candidate.from_dict(trial.config[NAS_KEY]["candidate"])
            retry = f" (again, after {trial.num_failures} worker failure(s))" if trial.num_failures else ""
            run.progress.trial_started(
                optuna_trial.number, f"scale {candidate.scale:g}, {candidate.operator_mix()}{retry}"
            )

    def on_trial_result(
        self, iteration: int, trials: list, trial: TuneTrial, result: dict, **info: Any
    ) -> None:
        run, optuna_trial = self._live(trial)
        if optuna_trial is None or "epoch" not in result:  # an outcome without training (infeasible, failed)
            return
        epoch = int(result["epoch"])
        optuna_trial.set_user_attr("heartbeat", time.time())
        optuna_trial.set_user_attr("worker", f"{result.get('hostname')}:{result.get('pid')}")
        optuna_trial.set_user_attr("node", result.get("node_id"))
        optuna_trial.set_user_attr("epoch", epoch)
        if len(run.space.objectives) == 1:
            value = result.get(run.space.objectives[0].metric)
            reported = optuna_trial.storage.get_trial(optuna_trial._trial_id).intermediate_values
            if isinstance(value, (int, float)) and math.isfinite(value) and epoch not in reported:
                optuna_trial.report(float(value), epoch)
        if run.progress:
            metrics = {k: result[k] for k in PROGRESS_KEYS if k in result}
            run.progress.epoch(optuna_trial.number, epoch, run.space.train.epochs, metrics)

    def on_trial_complete(self, iteration: int, trials: list, trial: TuneTrial, **info: Any) -> None:
        run, optuna_trial = self._live(trial)
        run.running.discard(trial.trial_id)
        if optuna_trial is None:
            return
        text = (trial.last_result or {}).get(RECORD_KEY)
        if text is not None:
            self._tell_outcome(run, optuna_trial, json.loads(text))
        elif trial.trial_id in run.pruned:
            optuna_trial.set_user_attr("pruned", True)
            run.study.tell(optuna_trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            optuna_trial.set_user_attr("error", "interrupted: stopped before it finished")
            optuna_trial.set_user_attr("interrupted", True)
            run.study.tell(optuna_trial, state=TrialState.FAIL, skip_if_finished=True)
        self._finished(run, optuna_trial)

    def on_trial_error(self, iteration: int, trials: list, trial: TuneTrial, **info: Any) -> None:
        run, optuna_trial = self._live(trial)
        run.running.discard(trial.trial_id)
        if optuna_trial is None:
            return
        error = trial.get_pickled_error()
        reason = describe_error(error) if error is not None else "unknown"
        attempts = trial.num_failures
        optuna_trial.set_user_attr(
            "error", f"the Ray worker failed {attempts} time{'s' * (attempts != 1)}: {reason}"
        )
        run.study.tell(optuna_trial, state=TrialState.FAIL, skip_if_finished=True)
        self._finished(run, optuna_trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: TuneTrial, **info: Any) -> None:
        run, optuna_trial = self._live(trial)
        if optuna_trial is None:
            return
        optuna_trial.set_user_attr("worker_failures", trial.num_failures)
        if run.progress:
            error = trial.get_pickled_error()
            reason = describe_error(error) if error is not None else "its worker failed"
            run.progress.line(
                f"trial {optuna_trial.number}: {reason[:160]}; retrying from its last checkpoint"
            )

    # -- helpers --------------------------------------------------------------------------------------------
    def _live(self, trial: TuneTrial) -> tuple[RayRun, optuna.Trial | None]:
        """The Optuna trial of a Tune trial, or None when it is already finished (a restored, stale Tune trial)."""
        run = lookup(self.key)
        trial_id = int(trial.config[NAS_KEY]["trial_id"])
        frozen = run.study._storage.get_trial(trial_id)
        if frozen.state.is_finished() or frozen.number != optuna_number(trial.config):
            return run, None
        optuna_trial = run.trials.get(trial_id)
        if optuna_trial is None:
            optuna_trial = run.trials[trial_id] = optuna.Trial(run.study, trial_id)
        return run, optuna_trial

    @staticmethod
    def _tell_outcome(run: RayRun, optuna_trial: optuna.Trial, record: dict[str, Any]) -> None:
        if record["state"] == "failed":
            optuna_trial.set_user_attr("error", record["error"])
            run.study.tell(optuna_trial, state=TrialState.FAIL, skip_if_finished=True)
            return
        if record["state"] == "stopped":  # early stopping at a rung, as the local backend records it
            record_stopped(optuna_trial, record["metrics"])
            run.study.tell(optuna_trial, state=TrialState.PRUNED, skip_if_finished=True)
            return
        outcome = TrialOutcome(
            record["state"],
            record["metrics"],
            [float(v) for v in record["values"]],
            [float(v) for v in record["constraints"]],
        )
        if not all(math.isfinite(v) for v in outcome.values):
            optuna_trial.set_user_attr(
                "error", f"FloatingPointError: objective values are not finite: {outcome.values}"
            )
            run.study.tell(optuna_trial, state=TrialState.FAIL, skip_if_finished=True)
            return
        values = record_outcome(optuna_trial, run.space, outcome)
        run.study.tell(optuna_trial, values, skip_if_finished=True)

    @staticmethod
    def _finished(run: RayRun, optuna_trial: optuna.Trial) -> None:
        run.trials.pop(optuna_trial._trial_id, None)
        if run.progress:
            run.progress.trial_finished(run.study, run.study._storage.get_trial(optuna_trial._trial_id))
