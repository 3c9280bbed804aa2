"""A study as data (``nas report --json``) and as plots (HTML with plotly, PNG with matplotlib).

JSON: ``study``, ``directions``, ``objectives``, ``trials`` (``number``, ``state``, ``values``, ``params``,
``candidate``, ``metrics`` with ``flops``, ``params``, ``acts``, ``latency_ms`` where measured, ``accuracy`` or
``psnr``, and ``error`` for failed trials; ``baseline`` on the plain control trials; ``stopped_at_epoch`` and
state ``stopped@E`` for a trial early stopping ended at a rung), ``pareto`` (trial numbers)
and ``baselines`` (each Pareto model against the plain model of equal or higher cost, with the quality
difference's 95% interval and verdict; see ``baselines.compare_with_baselines``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..space.schema import Space
from .baselines import compare_with_baselines
from .front_plot import front_figure, front_png

METRIC_KEYS = (
    "accuracy",
    "psnr",
    "ssim",
    "loss",
    "flops",
    "macs",
    "params",
    "training_params",
    "acts",
    "latency_ms",
    "train_seconds",
    "rewritten",
    "val_size",
    "psnr_se",
    "ssim_se",
)


def state_name(trial: optuna.trial.FrozenTrial) -> str:
    """complete, infeasible, stopped@E (early stopping at epoch E), pruned, fail, interrupted, running..."""
    if trial.user_attrs.get("infeasible"):
        return "infeasible"
    if trial.state == TrialState.PRUNED and trial.user_attrs.get("stopped_at_epoch") is not None:
        return f"stopped@{trial.user_attrs['stopped_at_epoch']}"
    if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"):
        return "interrupted"
    return trial.state.name.lower()


def pareto_numbers(study: optuna.Study) -> list[int]:
    """Feasible, trained trials on the Pareto front (the best trial for a single objective); never a pruned or
    stopped trial (only COMPLETE ones count, whatever values a stopped one had)."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get("infeasible") and all(c <= 0 for c in t.user_attrs.get("constraints", []))
    ]
    if not complete:
        return []
    directions = study.directions
    signs = [1 if d == optuna.study.StudyDirection.MINIMIZE else -1 for d in directions]

    def dominates(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
        av = [s * v for s, v in zip(signs, a.values)]
        bv = [s * v for s, v in zip(signs, b.values)]
        return all(x <= y for x, y in zip(av, bv)) and any(x < y for x, y in zip(av, bv))

    front = [t for t in complete if not any(dominates(o, t) for o in complete if o is not t)]
    if len(directions) == 1:
        front = [min(front, key=lambda t: signs[0] * t.values[0])]
    return sorted(t.number for t in front)


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    metrics = trial.user_attrs.get("metrics", {})
    record: dict[str, Any] = {
        "number": trial.number,
        "state": state_name(trial),
        "values": list(trial.values)
        if trial.values is not None and not trial.user_attrs.get("infeasible")
        else None,
        "params": dict(trial.params),
        "candidate": trial.user_attrs.get("candidate"),
        "metrics": {k: metrics[k] for k in METRIC_KEYS if k in metrics},
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
    }
    if trial.user_attrs.get("error"):
        record["error"] = trial.user_attrs["error"]
    if trial.user_attrs.get("baseline"):
        record["baseline"] = True
    if trial.user_attrs.get("stopped_at_epoch") is not None:  # its metrics are those of that epoch
        record["stopped_at_epoch"] = trial.user_attrs["stopped_at_epoch"]
    if trial.user_attrs.get("retry_of") is not None:
        record["retry_of"] = trial.user_attrs["retry_of"]
    if trial.user_attrs.get("constraints"):
        record["constraints"] = trial.user_attrs["constraints"]
    return record


def study_report(space: Space, study: optuna.Study) -> dict[str, Any]:
    pareto = pareto_numbers(study)
    return {
        "study": space.name,
        "directions": [d.name.lower() for d in study.directions],
        "objectives": [o.metric for o in space.objectives],
        "trials": [trial_record(t) for t in study.get_trials(deepcopy=False)],
        "pareto": pareto,
        "baselines": compare_with_baselines(space, study, pareto),
    }


def operator_mix(candidate: dict[str, Any] | None) -> str:
    if not candidate:
        return "-"
    ops = candidate.get("operators", {})
    return " ".join(f"{g}={a['name']}" for g, a in ops.items()) or "all conv"


# -- plots ---------------------------------------------------------------------------------------------------
def _plots(vis: Any, space: Space, study: optuna.Study) -> dict[str, Any]:
    """Figures by name from ``optuna.visualization`` or its ``matplotlib`` twin (those the study has trials for)."""
    names = [o.metric for o in space.objectives]
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get("infeasible")
    ]
    figures: dict[str, Any] = {}
    if not complete:
        return figures
    if len(names) == 3:  # two objectives: front_plot draws the front with the baselines
        figures["pareto_front"] = vis.plot_pareto_front(study, target_names=names)
    first = (lambda t: t.values[0]) if len(names) > 1 else None
    figures["optimization_history"] = vis.plot_optimization_history(study, target=first, target_name=names[0])
    if len(complete) >= 3 and complete[0].params:
        try:
            figures["param_importances"] = vis.plot_param_importances(
                study, target=first, target_name=names[0]
            )
        except (RuntimeError, ValueError, ZeroDivisionError):
            pass
    return figures


def write_plots(space: Space, study: optuna.Study, out_dir: Path) -> list[Path]:
    """``report.html`` (all figures, plotly embedded, works offline) and one PNG per figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna import visualization
    from optuna.visualization import matplotlib as matplotlib_visualization

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = study_report(space, study)
        front = front_figure(data)
        figures = {
            **({"pareto_front": front} if front is not None else {}),
            **_plots(visualization, space, study),
        }
        if figures:
            html = out_dir / "report.html"
            parts = [f"<h1>nas study {space.name}</h1>"]
            for index, (name, figure) in enumerate(figures.items()):
                parts.append(f"<h2>{name.replace('_', ' ')}</h2>")
                parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0))
            html.write_text(
                "<html><head><meta charset='utf-8'></head><body>" + "\n".join(parts) + "</body></html>"
            )
            written.append(html)
        if front is not None:
            written.append(front_png(data, out_dir / "pareto_front.png"))
        for name, ax in _plots(matplotlib_visualization, space, study).items():
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            path = out_dir / f"{name}.png"
            figure.set_size_inches(8, 5.5)
            figure.tight_layout()
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written
