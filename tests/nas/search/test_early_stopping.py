"""MO-ASHA (``nas.search.early_stopping``): the ranking on known points, and the rung ledger on a journal study with
known values: decisions, reuse on a second call (resume), retries reusing their origin's decisions."""

from __future__ import annotations

import math

import optuna
import pytest

from nas.search.early_stopping import (
    EarlyStopped,
    RungLedger,
    crowding_distances,
    keep_count,
    non_dominated_fronts,
    rank_order,
    rungs,
    should_continue,
)
from nas.search.study import open_storage, open_study
from nas.space import load_space
from nas.space.loader import SpaceError

ACC_FLOPS = ("maximize", "minimize")


# -- pure functions -------------------------------------------------------------------------------------------
def test_rungs_are_geometric_and_below_the_last_epoch():
    assert rungs(1, 3, 8) == [1, 3]
    assert rungs(1, 3, 9) == [1, 3]
    assert rungs(1, 3, 10) == [1, 3, 9]
    assert rungs(2, 2, 16) == [2, 4, 8]
    assert rungs(8, 3, 8) == [] and rungs(1, 2, 1) == []


def test_rank_order_by_front_then_crowding():
    points = [(0.9, 100), (0.8, 50), (0.7, 200), (0.95, 300), (0.6, 40)]  # (accuracy, flops)
    # front 1: 0, 1, 3, 4 (2 is dominated by 0); boundary points 3 and 4 first (infinite crowding), then 0 whose
    # neighbours are further apart (0.15/0.35 + 250/260 = 1.39) than those of 1 (0.3/0.35 + 60/260 = 1.09)
    assert non_dominated_fronts([(-a, f) for a, f in points]) == [[0, 1, 3, 4], [2]]
    distances = crowding_distances([(-a, f) for a, f in points], [0, 1, 3, 4])
    assert distances[3] == distances[4] == math.inf
    assert distances[0] == pytest.approx(0.15 / 0.35 + 250 / 260)
    assert distances[1] == pytest.approx(0.3 / 0.35 + 60 / 260)
    assert rank_order(points, ACC_FLOPS) == [3, 4, 0, 1, 2]


def test_directions_are_respected():
    points = [(0.9, 100), (0.8, 50)]
    assert rank_order(points, ("maximize", "maximize")) == [0, 1]  # 0 dominates
    assert rank_order(points, ("minimize", "minimize")) == [1, 0]
    assert rank_order([(1.0,), (3.0,), (2.0,)], ("minimize",)) == [0, 2, 1]


def test_crowding_ties_keep_the_given_order():
    # one front of two: both boundary points, infinitely crowded; equal points: the order given
    assert rank_order([(0.5, 10), (0.9, 90)], ACC_FLOPS) == [0, 1]
    assert rank_order([(0.9, 90), (0.5, 10)], ACC_FLOPS) == [0, 1]
    assert rank_order([(0.7, 50), (0.7, 50), (0.7, 50)], ACC_FLOPS) == [0, 1, 2]


def test_missing_or_non_finite_values_rank_last():
    assert rank_order([(math.nan, 10), (0.1, 10)], ACC_FLOPS) == [1, 0]
    assert rank_order([(None,), (0.1,)], ("maximize",)) == [1, 0]


def test_first_at_a_rung_always_continues():
    assert should_continue((0.0, 1e12), [], ACC_FLOPS, 3)
    assert should_continue((math.nan,), [], ("maximize",), 2)


def test_top_one_over_eta_boundary():
    assert [keep_count(n, 3) for n in range(1, 8)] == [1, 1, 1, 2, 2, 2, 3]
    others = [(0.9,), (0.8,), (0.7,)]  # with the own point: 4 results, the top 2 go on
    assert should_continue((0.85,), others, ("maximize",), 3)  # 2nd
    assert not should_continue((0.75,), others, ("maximize",), 3)  # 3rd
    assert not should_continue((0.95,), [(0.99,)], ("maximize",), 3)  # 2 results: only the best
    assert should_continue((0.95,), [(0.99,)], ("maximize",), 2) is False
    assert should_continue((0.99,), [(0.95,), (0.9,)], ("maximize",), 2)
    # a tie goes the own trial's way
    assert should_continue((0.8,), [(0.8,), (0.8,)], ("maximize",), 3)


def test_a_cheap_trial_continues_on_cost_alone():
    # worst accuracy, but nothing is cheaper: it is on the first front and a boundary point
    others = [(0.9, 100), (0.8, 90), (0.85, 95), (0.7, 80), (0.75, 85)]
    assert should_continue((0.1, 10), others, ACC_FLOPS, 3)
    assert not should_continue((0.1, 1000), others, ACC_FLOPS, 3)


# -- the space ------------------------------------------------------------------------------------------------
def test_early_stopping_in_the_space(tiny_space):
    on = "search.early_stopping={min_epochs: 1, reduction_factor: 3}"
    assert load_space(tiny_space(), [on]).search.early_stopping.reduction_factor == 3
    single = load_space(tiny_space(), [on, "objectives=[accuracy]"])  # one objective: ASHA
    assert single.search.early_stopping is not None
    with pytest.raises(SpaceError, match="choose one of search.pruner .median. and search.early_stopping"):
        load_space(tiny_space(), [on, "objectives=[accuracy]", "search.pruner=median"])
    with pytest.raises(SpaceError, match="search.early_stopping: needs an objective that training measures"):
        load_space(tiny_space(), [on, "objectives=[flops, params]"])
    with pytest.raises(SpaceError, match="reduction_factor: must be >= 2"):
        load_space(tiny_space(), ["search.early_stopping={reduction_factor: 1}"])


# -- the ledger -----------------------------------------------------------------------------------------------
@pytest.fixture
def ledger_study(tiny_space, tmp_path):
    """A journal study of the tiny space with rungs at epochs 1 and 2 (reduction factor 2, 4 epochs)."""
    space = load_space(
        tiny_space(), ["train.epochs=4", "search.early_stopping={min_epochs: 1, reduction_factor: 2}"]
    )
    study = open_study(space, open_storage(space, tmp_path / "study"))
    return space, study


def at(accuracy: float, flops: float) -> dict[str, float]:
    return {"accuracy": accuracy, "loss": 1.0 - accuracy, "flops": flops, "params": 7}


def decisions(study: optuna.Study, epoch: int) -> dict[int, str]:
    return {
        t.number: t.user_attrs[f"rung_{epoch}"]["decision"]
        for t in study.get_trials(deepcopy=False)
        if f"rung_{epoch}" in t.user_attrs
    }


def test_ledger_decisions_on_known_values(ledger_study):
    space, study = ledger_study
    ledger = RungLedger(space, study._storage, study._study_id)
    assert ledger.rungs == [1, 2]
    trials = [study.ask() for _ in range(5)]
    results = [at(0.5, 100), at(0.4, 200), at(0.6, 300), at(0.3, 50), at(0.45, 150)]
    expected = [
        ("continue", 1, 1, 1),  # the first at the rung
        ("stop", 2, 2, 1),  # dominated by trial 0
        ("continue", 1, 3, 2),  # non-dominated, ties ahead of trial 0
        ("continue", 1, 4, 2),  # cheapest: a boundary point of the first front
        ("stop", 4, 5, 3),  # dominated by trial 0 (second front, ahead of trial 1)
    ]
    for trial, metrics, (decision, rank, among, keep) in zip(trials, results, expected):
        record = ledger.decide(trial._trial_id, 1, metrics)
        assert (record["decision"], record["rank"], record["among"], record["keep"]) == (
            decision,
            rank,
            among,
            keep,
        )
        assert record["point"] == [metrics["accuracy"], metrics["flops"]]
    assert decisions(study, 1) == {0: "continue", 1: "stop", 2: "continue", 3: "continue", 4: "stop"}
    assert ledger.decide(trials[0]._trial_id, 3, at(0.9, 100)) is None  # not a rung: nothing recorded
    assert "rung_3" not in study.trials[0].user_attrs

    with pytest.raises(EarlyStopped) as stopped:  # the per-epoch hook
        ledger.check(trials[1]._trial_id, 1, at(0.4, 200))
    assert stopped.value.epoch == 1 and stopped.value.metrics["stopped_at_epoch"] == 1
    assert stopped.value.metrics["flops"] == 200 and "rank 2 of 2" in str(stopped.value)
    ledger.check(trials[0]._trial_id, 1, at(0.5, 100))  # continue: no exception


def test_a_recorded_decision_is_reused_not_recomputed(ledger_study):
    space, study = ledger_study
    ledger = RungLedger(space, study._storage, study._study_id)
    first, second = study.ask(), study.ask()
    ledger.decide(first._trial_id, 1, at(0.9, 10))
    assert ledger.decide(second._trial_id, 1, at(0.1, 1000))["decision"] == "stop"
    # a second call (a resumed run) with other values: the same record, nothing rewritten
    again = RungLedger(space, study._storage, study._study_id).decide(second._trial_id, 1, at(0.99, 1))
    assert again["decision"] == "stop" and again["point"] == [0.1, 1000]
    assert study.trials[1].user_attrs["rung_1"]["point"] == [0.1, 1000]


def test_a_retry_reuses_its_origins_decisions_and_counts_once(ledger_study):
    space, study = ledger_study
    storage = study._storage
    ledger = RungLedger(space, storage, study._study_id)
    origin, other = study.ask(), study.ask()
    ledger.decide(origin._trial_id, 1, at(0.5, 100))  # continue (first)
    ledger.decide(other._trial_id, 1, at(0.9, 50))  # dominates the origin: continue
    study.tell(other, [0.9, 50])
    storage.set_trial_user_attr(origin._trial_id, "interrupted", True)  # killed after rung 1
    study.tell(origin, state=optuna.trial.TrialState.FAIL)

    study.enqueue_trial({}, user_attrs={"retry_of": 0, "attempt": 1, "origin": 0})
    retry = study.ask()
    # better values now, and as the third result it would be ranked afresh: the origin's decision instead
    record = ledger.decide(retry._trial_id, 1, at(0.1, 5000))
    assert record["decision"] == "continue" and record["reused_from"] == 0 and record["among"] == 1
    assert ledger.decide(retry._trial_id, 2, at(0.2, 5000))["decision"] == "continue"  # its own, first at 2
    newcomer = study.ask()
    record = ledger.decide(newcomer._trial_id, 1, at(0.7, 70))
    assert record["among"] == 3  # trials 0 and 2 are one trial: counted once, with the origin's result
    assert record["decision"] == "continue" and record["rank"] == 2  # behind trial 1

    # the retry is killed too; a retry of the retry reuses both rungs, each from the attempt that decided it
    storage.set_trial_user_attr(retry._trial_id, "interrupted", True)
    study.tell(retry, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={"retry_of": 2, "attempt": 2, "origin": 0})
    again = study.ask()
    assert ledger.decide(again._trial_id, 1, at(0.3, 1))["reused_from"] == 0
    assert ledger.decide(again._trial_id, 2, at(0.3, 1))["reused_from"] == 2
    made = [
        (t.number, key)
        for t in study.get_trials(deepcopy=False)
        for key, value in t.user_attrs.items()
        if key.startswith("rung_") and "reused_from" not in value
    ]
    assert sorted(made) == [(0, "rung_1"), (1, "rung_1"), (2, "rung_2"), (3, "rung_1")]  # each made once


def test_baselines_are_never_stopped_but_count_for_others(ledger_study):
    space, study = ledger_study
    ledger = RungLedger(space, study._storage, study._study_id)
    ledger.decide(study.ask()._trial_id, 1, at(0.9, 10))
    study.enqueue_trial({}, user_attrs={"baseline": True})
    baseline = study.ask()
    record = ledger.decide(baseline._trial_id, 1, at(0.1, 1000))
    assert record["decision"] == "continue" and record["baseline"] and record["rank"] == 2
    ledger.check(baseline._trial_id, 1, at(0.1, 1000))  # no exception
    record = ledger.decide(study.ask()._trial_id, 1, at(0.05, 2000))  # behind both: 3rd of 3, keep 2
    assert record["decision"] == "stop" and record["among"] == 3
