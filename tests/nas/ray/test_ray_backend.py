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

import pytest
import ray
from raytest_cluster import REPO, mentioning

from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.search.ray_backend import run_ray
from nas.search.report import study_report
from nas.search.study import load_existing_study
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
