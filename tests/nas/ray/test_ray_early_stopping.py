"""MO-ASHA on the Ray backend: the workers read and write the study's rung ledger, and a trial stopped at a rung is
recorded as the local backend records it (PRUNED, ``stopped_at_epoch``, partial metrics)."""

from __future__ import annotations

import json
import os
import secrets

import optuna
import pytest
import ray
from optuna.trial import TrialState

from nas.search.progress import SearchProgress
from nas.search.ray_backend import run_ray
from nas.search.report import study_report
from nas.search.study import open_storage, open_study
from nas.space import load_space


@pytest.fixture(scope="module")
def local_ray():
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED")}
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_AUTH_MODE", None)
    ray.init(num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_trial_stopped_at_a_rung_is_recorded_pruned(local_ray, tiny_space, tmp_path):
    overrides = [
        "search.early_stopping={min_epochs: 1, reduction_factor: 10}",  # rung at epoch 1: only the best goes on
        "search.baselines=false",
        "search.trials=3",
    ]
    space = load_space(str(tiny_space()), overrides)
    study_dir = tmp_path / "study"
    # The ledger already holds a result at the rung that no trial of the tiny space can match (accuracy 1 at 1
    # flop): only the driver's storage knows it, so a worker that stops its trial has read the shared ledger.
    study = open_study(space, open_storage(space, study_dir))
    best = {"point": [1.0, 1.0], "decision": "continue", "rank": 1, "among": 1, "keep": 1}
    study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0], user_attrs={"rung_1": best}))

    progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False, quiet=True)
    study = run_ray(space, study_dir, progress)
    trials = study.get_trials()[1:]
    assert len(trials) == 2
    report = {t["number"]: t for t in study_report(space, study)["trials"]}
    for position, trial in enumerate(trials):
        assert trial.state == TrialState.PRUNED, trial.user_attrs.get("error")
        assert trial.user_attrs["stopped_at_epoch"] == 1 and trial.user_attrs["pruned"]
        record = trial.user_attrs["rung_1"]
        assert record["decision"] == "stop" and (record["rank"], record["among"]) == (2, 2 + position)
        metrics = trial.user_attrs["metrics"]
        assert metrics["stopped_at_epoch"] == 1 and metrics["flops"] > 1 and "accuracy" in metrics
        assert record["point"] == [metrics["accuracy"], metrics["flops"]]
        folder = study_dir / "trials" / str(trial.number)
        assert json.loads((folder / "metrics.json").read_text()) == metrics
        assert not (folder / "weights.pt").exists()
        log = (folder / "log.txt").read_text()
        assert "epoch 1/2" in log and "epoch 2/2" not in log and "stopped: stopped at epoch 1" in log
        assert report[trial.number]["state"] == "stopped@1"
