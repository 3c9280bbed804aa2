"""MO-ASHA end to end on the tiny space: trials stopped at rungs are PRUNED with their partial metrics and the epoch
they reached, never on the front nor exported; and a search killed with -9 and run again neither loses nor repeats
a rung decision."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli import main
from nas.errors import NasError
from nas.export import select_trial
from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.search.report import pareto_numbers, study_report
from nas.search.study import load_existing_study
from nas.space import load_space
from tests.tiny_space import tiny_space

# 300 samples: accuracies differ after two epochs (on 96 they often tie). Rungs at epochs 1 and 2 of 3.
SPACE = tiny_space(name="es", samples=300, epochs=3, search="{trials: 6, startup_trials: 2, seed: 0}")
EARLY = "search.early_stopping={min_epochs: 1, reduction_factor: 2}"


def rung_records(study: optuna.Study) -> dict[tuple[int, str], dict]:
    return {
        (t.number, key): value
        for t in study.get_trials(deepcopy=False)
        for key, value in t.user_attrs.items()
        if key.startswith("rung_")
    }


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("early-stopping")
    (root / "space.yaml").write_text(SPACE)
    space = load_space(str(root / "space.yaml"), [EARLY])
    progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False, quiet=True)
    run_local(space, root / "study", progress)
    return root / "study"


def test_stopped_trials_are_pruned_with_their_epoch_and_partial_metrics(searched):
    space, study = load_existing_study(searched)
    trials = study.get_trials()
    assert len(trials) == 6 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    assert stopped, "no trial was stopped"
    for trial in stopped:
        epoch = trial.user_attrs["stopped_at_epoch"]
        assert epoch in (1, 2) and trial.user_attrs[f"rung_{epoch}"]["decision"] == "stop"
        assert all(f"rung_{e}" in trial.user_attrs for e in range(1, epoch + 1))
        metrics = trial.user_attrs["metrics"]
        assert metrics["stopped_at_epoch"] == epoch and metrics["flops"] > 0 and 0 <= metrics["accuracy"] <= 1
        assert trial.user_attrs[f"rung_{epoch}"]["point"] == [metrics["accuracy"], metrics["flops"]]
        folder = searched / "trials" / str(trial.number)
        assert json.loads((folder / "metrics.json").read_text()) == metrics
        assert not (folder / "weights.pt").exists()
        log = (folder / "log.txt").read_text()
        assert f"epoch {epoch}/3" in log and f"epoch {epoch + 1}/3" not in log
        assert f"stopped: stopped at epoch {epoch} by early stopping" in log and "failed" not in log
    for trial in trials:
        if trial.state == TrialState.COMPLETE:  # went on at every rung, trained to the end
            assert [trial.user_attrs[f"rung_{e}"]["decision"] for e in (1, 2)] == ["continue", "continue"]
            assert (searched / "trials" / str(trial.number) / "weights.pt").exists()


def test_stopped_trials_are_never_on_the_front_nor_exported(searched, tmp_path, capsys):
    space, study = load_existing_study(searched)
    stopped = {t.number for t in study.get_trials() if t.state == TrialState.PRUNED}
    report = study_report(space, study)
    assert not stopped & set(report["pareto"]) and not stopped & set(pareto_numbers(study))
    states = {t["number"]: t["state"] for t in report["trials"]}
    for number in stopped:
        epoch = study.trials[number].user_attrs["stopped_at_epoch"]
        assert states[number] == f"stopped@{epoch}"
        assert report["trials"][number]["stopped_at_epoch"] == epoch
    # a stopped trial made to look best (the highest accuracy, the fewest flops, weights on disk): still not chosen
    copy = Path(shutil.copytree(searched, tmp_path / "study"))
    _, study = load_existing_study(copy)
    metrics = {"accuracy": 1.0, "flops": 1, "stopped_at_epoch": 1}
    attrs = {"stopped_at_epoch": 1, "pruned": True, "metrics": metrics}
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs=attrs))
    number = len(study.trials) - 1
    (copy / "trials" / str(number)).mkdir(parents=True)
    shutil.copy(next((copy / "trials").glob("*/weights.pt")), copy / "trials" / str(number) / "weights.pt")
    for chosen in (select_trial(copy), select_trial(copy, best="accuracy"), select_trial(copy, best="flops")):
        assert chosen.number not in stopped | {number} and chosen.trial.state == TrialState.COMPLETE
    with pytest.raises(NasError, match=f"trial {number} of .* was stopped early at epoch 1"):
        select_trial(copy, trial=number)
    out = str(tmp_path / "m.pt")
    assert main(["export", "--study", str(copy), "--trial", str(min(stopped)), "--out", out]) == 2
    assert "was stopped early at epoch" in capsys.readouterr().err


# -- kill -9, then the same command again ---------------------------------------------------------------------
def start(space: Path, study_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "nas", "search", "--space", str(space), "--study-dir", str(study_dir)]
    command += ["--trials", "2", "--set", EARLY, "--set", "search.baselines=false", "--no-plots"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_log(study_dir: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    log = study_dir / "trials" / "0" / "log.txt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and text in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"search ended early: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"trial 0 never logged {text!r}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_kill_neither_loses_nor_repeats_a_rung_decision(tmp_path):
    space, study_dir = tmp_path / "space.yaml", tmp_path / "study"
    # 6 epochs: rungs at 1, 2 and 4; killed in epoch 4 of trial 0 (the first: it goes on), after two decisions
    space.write_text(tiny_space(name="es", samples=200, epochs=6, search="{trials: 2, seed: 0}"))
    proc = start(space, study_dir)
    wait_for_log(study_dir, "epoch 3/6", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    _, study = load_existing_study(study_dir)
    before = rung_records(study)
    assert set(before) == {(0, "rung_1"), (0, "rung_2")}
    assert study.trials[0].state == TrialState.RUNNING

    rerun = start(space, study_dir)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    _, study = load_existing_study(study_dir)
    after = rung_records(study)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing lost or rewritten
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["interrupted"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    for rung in ("rung_1", "rung_2"):  # the retry took the decisions trial 0 had made
        assert after[(retry.number, rung)]["reused_from"] == 0
        assert after[(retry.number, rung)]["decision"] == before[(0, rung)]["decision"]
    made: dict[tuple[int, str], int] = {}  # (trial, rung) -> decisions made, not reused (attempts: one trial)
    for (number, rung), record in after.items():
        if "reused_from" not in record:
            group = int(study.trials[number].user_attrs.get("origin", number))
            made[(group, rung)] = made.get((group, rung), 0) + 1
    assert set(made.values()) == {1}
    assert (0, "rung_4") in made or retry.state == TrialState.PRUNED  # the retry decided rung 4 itself
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2


def test_parallel_workers_share_the_ledger(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(tiny_space(name="es", epochs=2, search="{trials: 4, seed: 0}"))
    space = load_space(str(path), [EARLY, "search.parallel=2"])  # a rung at epoch 1 of 2
    progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False, quiet=True)
    study = run_local(space, tmp_path / "study", progress)
    trials = study.get_trials()
    assert len(trials) == 4 and len({t.user_attrs["pid"] for t in trials}) == 2
    for trial in trials:
        decision = trial.user_attrs["rung_1"]["decision"]
        if trial.state == TrialState.PRUNED:
            assert decision == "stop" and trial.user_attrs["stopped_at_epoch"] == 1
        else:
            assert trial.state == TrialState.COMPLETE and decision == "continue"
    # each worker ran about two trials: a ranking among three or more results saw the other worker's
    assert max(t.user_attrs["rung_1"]["among"] for t in trials) >= 3
