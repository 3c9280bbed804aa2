"""The main job end to end on a tiny space: trials, records, resume, failures, constraints, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.cli import main
from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.search.report import study_report
from nas.search.study import load_existing_study
from nas.space import load_space


def search(space_path: str, study_dir: Path, overrides=()):
    space = load_space(space_path, list(overrides))
    return space, run_local(
        space, study_dir, SearchProgress(space.name, [o.metric for o in space.objectives], live=False)
    )


def test_search_records_every_trial(tiny_space, tmp_path):
    study_dir = tmp_path / "study"
    space, study = search(tiny_space(), study_dir)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        folder = study_dir / "trials" / str(trial.number)
        candidate = json.loads((folder / "candidate.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        assert candidate == trial.user_attrs["candidate"]
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["flops"] == trial.values[1]
        state = torch.load(folder / "weights.pt", weights_only=True)
        assert any(k.endswith("weight") for k in state)
        assert "epoch 1/1" in (folder / "log.txt").read_text()
    report = study_report(space, study)
    assert report["study"] == "tiny" and report["directions"] == ["maximize", "minimize"]
    assert report["pareto"] and set(report["pareto"]) <= {0, 1, 2}
    assert {"number", "state", "values", "params", "metrics"} <= set(report["trials"][0])
    assert {"flops", "params", "acts", "accuracy"} <= set(report["trials"][0]["metrics"])


def test_rerun_resumes_and_numbering_continues(tiny_space, tmp_path):
    study_dir = tmp_path / "study"
    _, study = search(tiny_space(), study_dir, ["search.trials=2"])
    first = {t.number: t.values for t in study.get_trials()}
    _, study = search(tiny_space(), study_dir, ["search.trials=4"])
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert {t.number: t.values for t in trials[:2]} == first
    _, study = search(tiny_space(), study_dir, ["search.trials=4"])  # nothing left to do
    assert len(study.get_trials()) == 4


def test_resume_refuses_a_different_space(tiny_space, tmp_path):
    study_dir = tmp_path / "study"
    search(tiny_space(), study_dir, ["search.trials=1"])
    from nas.errors import NasError

    with pytest.raises(NasError, match="different space.*train.epochs"):
        search(tiny_space(), study_dir, ["search.trials=2", "train.epochs=2"])


def test_failing_trials_are_recorded_and_the_study_goes_on(tiny_space, tmp_path):
    _, study = search(tiny_space(), tmp_path / "study", ["train.lr=1e12"])
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "FAIL" for t in trials)
    assert all("TrainingDiverged" in t.user_attrs["error"] for t in trials)
    assert "failed: TrainingDiverged" in (tmp_path / "study" / "trials" / "0" / "log.txt").read_text()


def test_infeasible_candidates_are_never_trained(tiny_space, tmp_path):
    study_dir = tmp_path / "study"
    space, study = search(tiny_space("constraints: {flops: {max: 10}}\n"), study_dir)
    for trial in study.get_trials():
        assert trial.state.name == "COMPLETE" and trial.user_attrs["infeasible"]
        assert trial.user_attrs["constraints"][0] > 0
        assert not (study_dir / "trials" / str(trial.number) / "weights.pt").exists()
    report = study_report(space, study)
    assert report["pareto"] == [] and {t["state"] for t in report["trials"]} == {"infeasible"}


def test_single_objective_with_pruner(tiny_space, tmp_path):
    _, study = search(
        tiny_space(),
        tmp_path / "study",
        ["objectives=[accuracy]", "search.pruner=median", "train.epochs=2", "search.trials=4"],
    )
    assert len(study.get_trials()) == 4
    assert all(t.intermediate_values for t in study.get_trials() if t.state.name == "COMPLETE")


@pytest.mark.parametrize("sampler", ["nsga2", "random", "gp"])
def test_samplers(tiny_space, tmp_path, sampler):
    _, study = search(tiny_space(), tmp_path / "study", [f"search.sampler={sampler}", "search.trials=2"])
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]


def test_cli_search_and_report(tiny_space, tmp_path, capsys):
    study_dir = tmp_path / "study"
    assert (
        main(["search", "--space", tiny_space(), "--study-dir", str(study_dir), "--trials", "2", "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "Pareto front" in out
        and (study_dir / "report.html").exists()
        and (study_dir / "pareto_front.png").exists()
    )
    assert main(["report", "--study", str(study_dir), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["number"] for t in data["trials"]] == [0, 1] and data["pareto"]
    space, study = load_existing_study(study_dir)
    assert space.name == "tiny" and len(study.get_trials()) == 2


def test_parallel_workers_share_the_study(tiny_space, tmp_path):
    _, study = search(tiny_space(), tmp_path / "study", ["search.parallel=2", "search.trials=4"])
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # two worker processes did the work


def test_scaling_is_searched_before_rewriting(tiny_space, tmp_path):
    _, study = search(
        tiny_space("scaling: {rule: dWr, factor: [0.5, 2]}\n"), tmp_path / "study", ["search.trials=3"]
    )
    trials = study.get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials), [t.user_attrs.get("error") for t in trials]
    flops = {
        t.params["scale"]: t.values[1]
        for t in trials
        if t.user_attrs["candidate"]["operators"]["stage1"]["name"] == "conv"
    }
    scales = {t.params["scale"] for t in trials}
    assert scales <= {0.5, 2.0}
    if len(flops) == 2:
        assert flops[2.0] > flops[0.5]
