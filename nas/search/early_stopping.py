"""Early stopping with several objectives: asynchronous multi-objective successive halving (MO-ASHA, Schmucker
et al. 2021), one implementation for every backend.

``search.early_stopping: {min_epochs, reduction_factor}`` puts rungs at ``min_epochs * reduction_factor**k``
epochs below ``train.epochs``. When a trial finishes the epoch of a rung, its point at that rung (every objective:
the training metrics as measured after that epoch, the costs exact from the start) is ranked with the points of
all the trials that reached the rung before it: non-dominated sorting, ties inside a front broken by crowding
distance (larger first, as NSGA-II). The trial goes on if it ranks in the top ``ceil(n / reduction_factor)`` of
those ``n`` points (itself included, and ahead of any point it ties with), so the first trial at a rung always goes
on. With one objective this is ASHA's stopping rule. As in any asynchronous scheme, two trials that reach a rung
at the same moment (parallel workers) may each be ranked without the other.

The ledger of rung results lives in the study itself, as a user attr ``rung_<epoch>`` of each trial
(``{"point": [...], "decision": "continue" | "stop", "rank", "among", "keep"}``), written through the study's
storage: every process that runs trials (local workers, Ray workers) reads and writes the same ledger, and a rerun
after a crash finds it. A decision recorded for a trial at a rung is never made again: a retried trial (user attrs
``origin`` / ``retry_of``, see ``study.enqueue_retries``) reuses the decisions of its earlier attempts (noting
``reused_from``), and the attempts of one trial count once in the ranking of others. Baseline trials (user attr
``baseline``) always go on, the study's control; their points count in the ranking of others.

A stopped trial ends PRUNED with ``stopped_at_epoch`` and its partial metrics (``metrics``, the same flat attr a
finished trial has, and ``trials/<N>/metrics.json``); its weights are not saved. It is never on the reported front
nor exported. What the samplers learn from it: Optuna's multi-objective TPE puts PRUNED trials (they have no
intermediate values, ``Trial.report`` refuses several objectives) after the complete ones when it splits trials
into good and bad, so in practice among the bad unless fewer trials are complete than the good group holds;
NSGA-II ignores them (its population takes COMPLETE trials only). A single-objective study reports the metric per
epoch, so TPE ranks a stopped trial by its last reported value, as with Optuna's own pruners.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ..space.schema import Space
from ..trial import StopTraining

RUNG_PREFIX = "rung_"  # user attr rung_<epoch>: the trial's result and the decision at that rung
STOPPED_AT = "stopped_at_epoch"  # user attr of a trial stopped at a rung (and key in its metrics)
BASELINE = "baseline"  # user attr of the study's control trials (never stopped)
CONTINUE, STOP = "continue", "stop"


def rungs(min_epochs: int, reduction_factor: int, epochs: int) -> list[int]:
    """The rung epochs ``min_epochs * reduction_factor**k`` below ``epochs`` (the last epoch is not a rung)."""
    out, epoch = [], min_epochs
    while epoch < epochs:
        out.append(epoch)
        epoch *= reduction_factor
    return out


# -- ranking --------------------------------------------------------------------------------------------------
def _minimized(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[tuple[float, ...]]:
    """Every objective as one to minimize; a missing or non-finite value is the worst possible."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    out = []
    for point in points:
        values = []
        for sign, value in zip(signs, point):
            finite = value is not None and math.isfinite(value)
            values.append(sign * float(value) if finite else math.inf)
        out.append(tuple(values))
    return out


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_fronts(points: Sequence[tuple[float, ...]]) -> list[list[int]]:
    """Indices of ``points`` (all minimized) by front: the non-dominated ones, then those only they dominate..."""
    left, fronts = list(range(len(points))), []
    while left:
        front = [i for i in left if not any(_dominates(points[j], points[i]) for j in left if j != i)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def crowding_distances(points: Sequence[tuple[float, ...]], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each member of ``front``: the boundary points of every objective (where the
    members differ) are infinitely far; inner points sum the normalized gaps between their neighbours."""
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for axis in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][axis])
        span = points[ordered[-1]][axis] - points[ordered[0]][axis]
        if span == 0:  # every member equal here: no boundary, no gaps
            continue
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if not math.isfinite(span):
            continue
        for before, here, after in zip(ordered, ordered[1:], ordered[2:]):
            distance[here] += (points[after][axis] - points[before][axis]) / span
    return distance


def rank_order(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of ``points`` best first: by non-dominated front, inside a front by crowding distance (larger
    first); exact ties keep the order given."""
    minimized = _minimized(points, directions)
    key: dict[int, tuple[int, float]] = {}
    for level, front in enumerate(non_dominated_fronts(minimized)):
        for index, distance in crowding_distances(minimized, front).items():
            key[index] = (level, -distance)
    return sorted(range(len(points)), key=lambda i: key[i])


def keep_count(n: int, reduction_factor: int) -> int:
    """How many of ``n`` results at a rung go on: the top ``ceil(n / reduction_factor)``."""
    return math.ceil(n / reduction_factor)


def rank_at_rung(
    own: Sequence[float], others: Sequence[Sequence[float]], directions: Sequence[str]
) -> tuple[int, int]:
    """(0-based position of ``own`` among all results at the rung, how many there are); ``own`` goes ahead of
    any point it ties with."""
    order = rank_order([own, *others], directions)
    return order.index(0), len(order)


def should_continue(
    own: Sequence[float], others: Sequence[Sequence[float]], directions: Sequence[str], reduction_factor: int
) -> bool:
    """Whether a trial whose point at a rung is ``own`` goes on, given the points ``others`` recorded there
    before it: its position is inside the top ``ceil(n / reduction_factor)`` of the ``n`` points."""
    position, count = rank_at_rung(own, others, directions)
    return position < keep_count(count, reduction_factor)


# -- the ledger -----------------------------------------------------------------------------------------------
class EarlyStopped(StopTraining):
    """Raised in the per-epoch hook when a trial is stopped at a rung; carries what the backend records."""

    def __init__(self, epoch: int, metrics: dict[str, Any], record: dict[str, Any]) -> None:
        super().__init__(
            f"stopped at epoch {epoch} by early stopping: rank {record['rank']} of {record['among']} at the rung, "
            f"the top {record['keep']} go on"
        )
        self.epoch, self.record = epoch, record
        self.metrics = stopped_metrics(metrics, epoch)


def stopped_metrics(metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
    """A stopped trial's flat metrics: the costs and the last epoch's metrics, and the epoch it stopped at."""
    kept = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))
    }
    return {**kept, STOPPED_AT: epoch}


def rung_key(epoch: int) -> str:
    return f"{RUNG_PREFIX}{epoch}"


def _group(trial: optuna.trial.FrozenTrial) -> int:
    """The trial an attempt belongs to: a retry's ``origin``, else itself."""
    return int(trial.user_attrs.get("origin", trial.number))


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class RungLedger:
    """The rung results of one study, read and written through its storage (any process, any backend)."""

    space: Space
    storage: optuna.storages.BaseStorage
    study_id: int

    @classmethod
    def for_trial(cls, trial: optuna.Trial, space: Space) -> RungLedger:
        return cls(space, trial.storage, trial.study._study_id)

    @classmethod
    def open(cls, space: Space, study_dir: Path, storage_url: str | None = None) -> RungLedger:
        """The ledger of the study in ``study_dir`` (or at ``storage_url``), from another process (a Ray worker)."""
        from .study import open_storage

        storage = open_storage(space, Path(study_dir), storage_url)
        return cls(space, storage, storage.get_study_id_from_name(space.name))

    @property
    def rungs(self) -> list[int]:
        settings = self.space.search.early_stopping
        if settings is None:
            return []
        return rungs(settings.min_epochs, settings.reduction_factor, self.space.train.epochs)

    def point(self, metrics: dict[str, Any]) -> list[float | None]:
        """The objectives' values in ``metrics`` (the space's order); None where missing or not finite."""
        return [_finite_or_none(metrics.get(o.metric)) for o in self.space.objectives]

    def decide(self, trial_id: int, epoch: int, metrics: dict[str, Any]) -> dict[str, Any] | None:
        """The trial's record at rung ``epoch`` (None when ``epoch`` is not a rung): the one recorded already for
        it or an earlier attempt of it, else a new decision, recorded before it is returned."""
        if epoch not in self.rungs:
            return None
        key = rung_key(epoch)
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        own = next(t for t in trials if t._trial_id == trial_id)
        if key in own.user_attrs:
            return dict(own.user_attrs[key])
        group = _group(own)
        earlier = sorted(
            (t for t in trials if t is not own and _group(t) == group and key in t.user_attrs),
            key=lambda t: t.number,
        )
        if earlier:
            first = earlier[0]
            record = {
                **first.user_attrs[key],
                "point": self.point(metrics),
                "reused_from": first.user_attrs[key].get("reused_from", first.number),
            }
        else:
            record = self._new_decision(own, group, key, trials, metrics)
        self.storage.set_trial_user_attr(trial_id, key, record)
        return record

    def _new_decision(
        self,
        own: optuna.trial.FrozenTrial,
        group: int,
        key: str,
        trials: list[optuna.trial.FrozenTrial],
        metrics: dict[str, Any],
    ) -> dict[str, Any]:
        firsts: dict[int, optuna.trial.FrozenTrial] = {}  # one result per trial, whatever its attempts
        for trial in sorted(trials, key=lambda t: t.number):
            if key in trial.user_attrs and _group(trial) != group:
                firsts.setdefault(_group(trial), trial)
        others = [list(t.user_attrs[key]["point"]) for t in firsts.values()]
        point = self.point(metrics)
        position, count = rank_at_rung(point, others, self.space.directions)
        keep = keep_count(count, self.space.search.early_stopping.reduction_factor)
        record: dict[str, Any] = {
            "point": point,
            "decision": CONTINUE if position < keep else STOP,
            "rank": position + 1,
            "among": count,
            "keep": keep,
        }
        if own.user_attrs.get(BASELINE):
            record.update(decision=CONTINUE, baseline=True)
        return record

    def check(self, trial_id: int, epoch: int, metrics: dict[str, Any]) -> None:
        """The per-epoch hook: record the rung result and raise ``EarlyStopped`` when the trial stops here."""
        record = self.decide(trial_id, epoch, metrics)
        if record is not None and record["decision"] == STOP:
            raise EarlyStopped(epoch, metrics, record)


def describe(space: Space) -> str | None:
    """One line for the progress display: the rungs, or that no rung lies below ``train.epochs``."""
    settings = space.search.early_stopping
    if settings is None:
        return None
    at = rungs(settings.min_epochs, settings.reduction_factor, space.train.epochs)
    if not at:
        return (
            f"early stopping: no rung below train.epochs={space.train.epochs}; every trial trains to the end"
        )
    keep = f"the top 1/{settings.reduction_factor}"
    return f"early stopping (MO-ASHA): rungs at epochs {', '.join(map(str, at))}; {keep} of each rung goes on"
