"""The Ray backend in this process on a local Ray instance: the same trial pipeline and records as the local
backend, failures and infeasible candidates recorded, ASHA on single-objective studies; and ``nas search
--backend ray`` without ``--address`` starting and stopping its own instance."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import ray
from optuna.trial import TrialState
from raytest_cluster import REPO, mentioning

from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.search.ray_backend import run_ray
from nas.search.report import study_report
from nas.search.study import load_existing_study, open_storage, open_study
from nas.space import load_space


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (token auth from the environment, no file in ~/.ray) for the module."""
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


def quiet(space) -> SearchProgress:
    return SearchProgress(space.name, [o.metric for o in space.objectives], live=False, quiet=True)


def search(backend, space_path: Path, study_dir: Path, overrides=()):
    space = load_space(str(space_path), list(overrides))
    return space, backend(space, study_dir, quiet(space))


def test_same_pipeline_and_records_as_the_local_backend(local_ray, tiny_space, tmp_path):
    overrides = [
        f"resources.cpu={os.cpu_count()}"
    ]  # as many threads as the local backend: the same arithmetic
    space, study = search(run_ray, tiny_space(), tmp_path / "ray", overrides)
    _, local = search(run_local, tiny_space(), tmp_path / "local", overrides)
    trials, expected = study.get_trials(), local.get_trials()
    assert [t.number for t in trials] == [0, 1, 2] and {t.state.name for t in trials} == {"COMPLETE"}
    for trial, twin in zip(trials, expected):  # the same seeded sampler asks the same candidates
        assert trial.params == twin.params and trial.user_attrs["candidate"] == twin.user_attrs["candidate"]
        assert trial.values[1] == twin.values[1] and trial.values[0] == pytest.approx(
            twin.values[0], abs=1e-6
        )
        assert set(trial.user_attrs["metrics"]) == set(twin.user_attrs["metrics"])
        folder = tmp_path / "ray" / "trials" / str(trial.number)
        assert json.loads((folder / "candidate.json").read_text()) == trial.user_attrs["candidate"]
        assert json.loads((folder / "metrics.json").read_text())["flops"] == trial.values[1]
        assert (folder / "weights.pt").exists() and "epoch 2/2" in (folder / "log.txt").read_text()
        assert trial.user_attrs["node"] and trial.user_attrs["worker"]
    report = study_report(space, study)
    assert report["pareto"] and {t["state"] for t in report["trials"]} == {"complete"}
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [
        "journal.log",
        "ray",
        "space.yaml",
        "trials",
    ]


def test_failing_trials_end_failed_with_their_reason(local_ray, tiny_space, tmp_path):
    _, study = search(run_ray, tiny_space(), tmp_path / "study", ["train.lr=1e12"])
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "FAIL" for t in trials)  # never left RUNNING
    assert all("TrainingDiverged" in t.user_attrs["error"] for t in trials)
    assert "failed: TrainingDiverged" in (tmp_path / "study" / "trials" / "0" / "log.txt").read_text()


def test_infeasible_candidates_are_never_trained(local_ray, tiny_space, tmp_path):
    study_dir = tmp_path / "study"
    space, study = search(
        run_ray, tiny_space("constraints: {flops: {max: 10}}\n"), study_dir, ["search.trials=2"]
    )
    for trial in study.get_trials():
        assert trial.state.name == "COMPLETE" and trial.user_attrs["infeasible"]
        assert trial.user_attrs["constraints"][0] > 0 and trial.system_attrs["constraints:flops"] > 0
        assert not (study_dir / "trials" / str(trial.number) / "weights.pt").exists()
    assert study_report(space, study)["pareto"] == []


def test_single_objective_runs_asha_and_records_every_epoch(local_ray, tiny_space, tmp_path):
    _, study = search(
        run_ray,
        tiny_space(),
        tmp_path / "study",
        ["objectives=[loss]", "search.pruner=median", "train.epochs=4", "search.trials=4"],
    )
    trials = study.get_trials()
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    for trial in trials:
        epochs = sorted(trial.intermediate_values)
        assert epochs == list(range(1, len(epochs) + 1))
        if trial.state.name == "PRUNED":
            assert trial.user_attrs["pruned"] and len(epochs) < 4
        else:
            assert len(epochs) == 4 and trial.value == trial.intermediate_values[4]


def test_a_rerun_resumes_the_study(local_ray, tiny_space, tmp_path):
    _, study = search(run_ray, tiny_space(), tmp_path / "study", ["search.trials=2"])
    first = {t.number: t.values for t in study.get_trials()}
    _, study = search(run_ray, tiny_space(), tmp_path / "study", ["search.trials=3"])
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2] and {t.number: t.values for t in trials[:2]} == first
    assert sorted(p.name for p in (tmp_path / "study" / "ray").glob("run-*")) == ["run-1", "run-2"]


# MO-ASHA on the Ray backend: the workers read and write the study's rung ledger, and a trial stopped at a rung
# is recorded as the local backend records it. (In this module: Ray caches a client's auth token in the process,
# so a second local instance with another token after the cluster tests would refuse the client.)
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


def test_without_address_the_command_starts_and_stops_its_own_instance(tiny_space, tmp_path):
    study_dir = tmp_path / "study"
    env = dict(
        os.environ, RAY_AUTH_TOKEN=secrets.token_hex(16), RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO)
    )
    env.pop("RAY_AUTH_MODE", None)
    command = [
        sys.executable,
        "-m",
        "nas",
        "search",
        "--space",
        str(tiny_space()),
        "--study-dir",
        str(study_dir),
        "--backend",
        "ray",
        "--trials",
        "1",
        "--no-plots",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    # The instance's daemons name its session directory, which ends in the starting process's pid.
    left = mentioning(f"_{process.pid}/")
    for pid in left:  # clean up what a failing command left behind, by pid
        os.kill(pid, signal.SIGKILL)
    assert not left, "the command left its Ray instance running"
    assert process.returncode == 0, err[-3000:]
    assert "on a local Ray instance" in out
    _, study = load_existing_study(study_dir)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
