"""Every study carries its own control: the plain (all-``conv``) candidate at each scale factor of the space,
enqueued before sampling (``search.baselines``, on by default) and counted in the budget.

The report then answers the user's question for each Pareto model: does it beat the plain model that costs as
much? It is compared with the cheapest baseline whose cost (the first cost objective, e.g. flops) is at least
its own, else with the costliest baseline; the quality difference carries its 95% interval
(``uncertainty``), and a difference inside it is "no measurable gain", never a win.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from ..space.schema import COST_METRICS, Space
from .sampling import SearchPlan
from .uncertainty import quality_difference, quality_interval, verdict

BASELINE = "baseline"  # user attr: True on a baseline trial (and on its retries)
BASELINE_SCALE = "baseline_scale"
QUALITY_METRICS = ("accuracy", "psnr", "ssim", "loss")


def baseline_params(plan: SearchPlan, scale: float) -> dict[str, Any]:
    """The Optuna parameters of the all-conv candidate at ``scale`` (only those the sampler asks for)."""
    params: dict[str, Any] = {"scale": scale} if len(plan.scales) > 1 else {}
    for group, names in plan.groups.items():
        if len(names) > 1 and "conv" in names:
            params[f"{group}.op"] = "conv"
    return params


def enqueue_baselines(study: optuna.Study, space: Space, plan: SearchPlan) -> list[float]:
    """Enqueue the baseline at every scale the study does not hold yet (waiting, running or finished); returns
    the scales enqueued. Resuming enqueues nothing twice."""
    if not space.search.baselines:
        return []
    held = {
        float(t.user_attrs[BASELINE_SCALE])
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(BASELINE) and BASELINE_SCALE in t.user_attrs
    }
    added = []
    for scale in plan.scales:
        if float(scale) in held:
            continue
        attrs = {BASELINE: True, BASELINE_SCALE: float(scale)}
        study.enqueue_trial(baseline_params(plan, scale), user_attrs=attrs, skip_if_exists=False)
        added.append(float(scale))
    return added


def describe_enqueued(scales: list[float]) -> str:
    return f"baselines first: the all-conv model at scale {', '.join(f'{s:g}' for s in scales)}"


# -- the comparison ------------------------------------------------------------------------------------------
def quality_objective(space: Space) -> tuple[str, bool] | None:
    """(metric, maximize) of the objective that training decides, if any."""
    for objective in space.objectives:
        if objective.metric in QUALITY_METRICS:
            return objective.metric, objective.direction == "maximize"
    return None


def cost_objective(space: Space) -> str | None:
    for objective in space.objectives:
        if objective.metric in COST_METRICS or objective.metric == "latency_ms":
            return objective.metric
    return None


def _trained(trial: optuna.trial.FrozenTrial) -> bool:
    return (
        trial.state == TrialState.COMPLETE
        and not trial.user_attrs.get("infeasible")
        and all(c <= 0 for c in trial.user_attrs.get("constraints", []))
    )


def baseline_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The fully trained, feasible baseline trials."""
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(BASELINE) and _trained(t)]


def _pick_baseline(cost: float, baselines: list[tuple[float, Any]]) -> tuple[Any, str]:
    """The cheapest baseline costing at least ``cost``, else the costliest one (with a note)."""
    costlier = [b for b in baselines if b[0] >= cost]
    if costlier:
        return min(costlier, key=lambda b: b[0])[1], "equal or higher cost"
    return max(baselines, key=lambda b: b[0])[1], "costs more than every baseline"


def compare_with_baselines(space: Space, study: optuna.Study, pareto: list[int]) -> dict[str, Any]:
    """The report's ``baselines`` section: the baselines themselves and, for each Pareto model, the baseline it
    is compared with and the quality difference with its 95% interval and verdict."""
    quality, cost = quality_objective(space), cost_objective(space)
    baselines = baseline_trials(study)
    section: dict[str, Any] = {
        "enabled": space.search.baselines,
        "trials": [t.number for t in baselines],
        "metric": quality[0] if quality else None,
        "cost": cost,
        "comparisons": [],
    }
    if quality is None or not baselines:
        section["note"] = (
            "no quality objective to compare"
            if quality is None
            else "no baseline trial has finished training"
        )
        return section
    metric, maximize = quality
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    costed = [(float(t.user_attrs.get("metrics", {}).get(cost, 0.0)) if cost else 0.0, t) for t in baselines]
    for number in pareto:
        trial = by_number[number]
        metrics = trial.user_attrs.get("metrics", {})
        if trial.user_attrs.get(BASELINE):
            section["comparisons"].append({"trial": number, "baseline": number, "verdict": "baseline"})
            continue
        own_cost = float(metrics.get(cost, 0.0)) if cost else 0.0
        reference, how = _pick_baseline(own_cost, costed)
        reference_metrics = reference.user_attrs.get("metrics", {})
        difference = quality_difference(metric, metrics, reference_metrics)
        entry: dict[str, Any] = {
            "trial": number,
            "baseline": reference.number,
            "matched": how,
            metric: metrics.get(metric),
            "baseline_" + metric: reference_metrics.get(metric),
            "cost": own_cost,
            "baseline_cost": float(reference_metrics.get(cost, 0.0)) if cost else None,
        }
        own = quality_interval(metric, metrics)
        if own is not None:
            entry["uncertainty"] = own.half_width
        if difference is None:
            entry.update(difference=None, verdict="uncertainty unknown")
        else:
            entry.update(
                difference=difference.value,
                interval=[difference.low, difference.high],
                verdict=verdict(difference, maximize),
            )
        section["comparisons"].append(entry)
    return section
