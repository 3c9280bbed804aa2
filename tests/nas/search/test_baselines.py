"""Plain baselines in every study, and the honest comparison the report makes with them."""

from __future__ import annotations

import math

import optuna
import pytest

from nas.cli.report_cmd import baseline_lines
from nas.search.baselines import compare_with_baselines, enqueue_baselines
from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.search.report import study_report
from nas.search.sampling import SearchPlan
from nas.search.study import enqueue_retries, open_storage, open_study
from nas.search.uncertainty import (
    Interval,
    mean_difference,
    proportion_difference,
    verdict,
    wilson_interval,
)
from nas.space import load_space

SCALES = "scaling: {rule: dWr, factor: [0.5, 1]}\n"


def search(space_path: str, study_dir, overrides=()):
    space = load_space(space_path, list(overrides))
    progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False)
    return space, run_local(space, study_dir, progress)


# -- statistics, against published values -------------------------------------------------------------------
def test_wilson_interval_matches_hand_computed_values():
    interval = wilson_interval(0.5, 100)
    assert interval.low == pytest.approx(0.4038, abs=1e-4) and interval.high == pytest.approx(
        0.5962, abs=1e-4
    )
    # Newcombe (1998), Table II: 81/263 -> 0.2553 to 0.3662
    interval = wilson_interval(81 / 263, 263)
    assert interval.low == pytest.approx(0.2553, abs=1e-4) and interval.high == pytest.approx(
        0.3662, abs=1e-4
    )
    assert wilson_interval(1.0, 50).high == 1.0 and wilson_interval(0.0, 50).low == pytest.approx(
        0.0, abs=1e-12
    )


def test_newcombe_difference_matches_the_paper():
    # Newcombe (1998), method 10, example (a): 56/70 - 48/80 = 0.2000, interval 0.0524 to 0.3339
    difference = proportion_difference(56 / 70, 70, 48 / 80, 80)
    assert difference.value == pytest.approx(0.2)
    assert difference.low == pytest.approx(0.0524, abs=1e-4) and difference.high == pytest.approx(
        0.3339, abs=1e-4
    )


def test_mean_difference_adds_standard_errors_in_quadrature():
    difference = mean_difference(30.0, 0.3, 29.0, 0.4)
    assert difference.value == 1.0
    assert difference.high - difference.value == pytest.approx(1.959964 * 0.5, rel=1e-6)


@pytest.mark.parametrize(
    ("low", "high", "maximize", "expected"),
    [
        (0.001, 0.05, True, "gain"),
        (0.0, 0.05, True, "no measurable gain"),  # touching zero is inside the noise
        (-0.01, 0.05, True, "no measurable gain"),
        (-0.05, -0.001, True, "loss"),
        (-0.05, -0.001, False, "gain"),  # a loss metric: lower is better
    ],
)
def test_verdict_boundary(low, high, maximize, expected):
    assert verdict(Interval((low + high) / 2, low, high), maximize) == expected


# -- baselines in a study ------------------------------------------------------------------------------------
def test_baselines_run_first_once_per_scale_and_survive_resume(tiny_space, tmp_path):
    path = tiny_space(SCALES)
    study_dir = tmp_path / "study"
    space, study = search(path, study_dir, ["search.trials=3"])
    trials = study.get_trials()
    baselines = [t for t in trials if t.user_attrs.get("baseline")]
    assert [t.number for t in baselines] == [0, 1]
    assert sorted(t.user_attrs["baseline_scale"] for t in baselines) == [0.5, 1.0]
    for trial in baselines:
        assert all(a["name"] == "conv" for a in trial.user_attrs["candidate"]["operators"].values())
        assert trial.user_attrs["candidate"]["scale"] == trial.user_attrs["baseline_scale"]
    _, study = search(path, study_dir, ["search.trials=5"])  # resumed: no second set of baselines
    assert sum(1 for t in study.get_trials() if t.user_attrs.get("baseline")) == 2
    assert len(study.get_trials()) == 5
    report = study_report(space, study)
    assert [t["number"] for t in report["trials"] if t.get("baseline")] == [0, 1]
    assert report["baselines"]["trials"] == [0, 1]


def test_baselines_off(tiny_space, tmp_path):
    _, study = search(tiny_space(SCALES), tmp_path / "study", ["search.trials=2", "search.baselines=false"])
    assert not any(t.user_attrs.get("baseline") for t in study.get_trials())


def test_a_retried_baseline_stays_a_baseline(tiny_space, tmp_path):
    space = load_space(tiny_space(SCALES), [])
    study = open_study(space, open_storage(space, tmp_path))
    plan = SearchPlan.from_space(space)
    assert enqueue_baselines(study, space, plan) == [0.5, 1.0]
    trial = study.ask()
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert enqueue_retries(study, max_retries=1) == [trial.number]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert sorted(t.user_attrs["baseline_scale"] for t in waiting) == [0.5, 1.0]
    assert enqueue_baselines(study, space, plan) == []


def test_metric_names_and_flat_metrics_reach_optuna(tiny_space, tmp_path):
    _, study = search(tiny_space(), tmp_path / "study", ["search.trials=2"])
    assert study.metric_names == ["accuracy", "flops"]
    frame = study.trials_dataframe()
    assert {"values_accuracy", "values_flops", "user_attrs_flops", "user_attrs_val_size"} <= set(
        frame.columns
    )
    assert (frame["user_attrs_flops"] == frame["values_flops"]).all()


# -- the comparison ------------------------------------------------------------------------------------------
def _study_with(values: dict[int, tuple[float, float, bool]], val_size: int = 400):
    """A synthetic two-objective study: number -> (accuracy, flops, is_baseline)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number in sorted(values):
        accuracy, flops, baseline = values[number]
        metrics = {"accuracy": accuracy, "flops": flops, "val_size": val_size}
        attrs = {"metrics": metrics, "constraints": [], **({"baseline": True} if baseline else {})}
        study.add_trial(optuna.trial.create_trial(values=[accuracy, flops], user_attrs=attrs))
    return study


def test_each_pareto_model_is_compared_with_the_baseline_of_equal_or_higher_cost(tiny_space):
    space = load_space(tiny_space(SCALES), [])
    study = _study_with(
        {
            0: (0.80, 1_000, True),
            1: (0.90, 4_000, True),
            2: (0.88, 900, False),  # cheaper than baseline 0 and far better: a gain against baseline 0
            3: (0.915, 3_500, False),  # within the noise of baseline 1
        }
    )
    section = compare_with_baselines(space, study, pareto=[2, 3, 1])
    by_trial = {c["trial"]: c for c in section["comparisons"]}
    assert by_trial[2]["baseline"] == 0 and by_trial[2]["verdict"] == "gain"
    assert by_trial[3]["baseline"] == 1 and by_trial[3]["verdict"] == "no measurable gain"
    assert by_trial[1]["verdict"] == "baseline"
    low, high = by_trial[3]["interval"]
    assert low < 0 < high and math.isclose(by_trial[3]["difference"], 0.015)
    lines = "\n".join(baseline_lines(section))
    assert "trial 2" in lines and "-> gain" in lines and "-> no measurable gain" in lines


def test_a_model_costlier_than_every_baseline_says_so(tiny_space):
    space = load_space(tiny_space(SCALES), [])
    study = _study_with({0: (0.80, 1_000, True), 1: (0.99, 9_000, False)})
    (entry,) = compare_with_baselines(space, study, pareto=[1])["comparisons"]
    assert entry["baseline"] == 0 and entry["matched"] == "costs more than every baseline"
    assert entry["verdict"] == "gain"
