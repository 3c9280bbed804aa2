"""The Pareto plot of a two-objective study, from the report's data: every trained trial, the front, and the
plain baselines as their own series, each point labelled with its trial number (quality on y, cost on x)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERIES = (  # name, colour, marker (plotly, matplotlib)
    ("trials", "#9aa5b1", ("circle", "o")),
    ("Pareto front", "#d6452b", ("circle", "o")),
    ("baselines (all conv)", "#1f5fa8", ("diamond", "D")),
)


def _points(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Trained trials of the report by series (a baseline on the front is shown as a baseline)."""
    pareto = set(data["pareto"])
    series: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in SERIES}
    for trial in data["trials"]:
        if trial["state"] != "complete" or trial["values"] is None:
            continue
        name = "baselines (all conv)" if trial.get("baseline") else "trials"
        if trial["number"] in pareto and not trial.get("baseline"):
            name = "Pareto front"
        series[name].append(trial)
    return series


def _front_line(data: dict[str, Any], x_index: int, y_index: int) -> tuple[list[float], list[float]]:
    """The front as a staircase through its points (baselines on it included), cheapest first."""
    pareto = set(data["pareto"])
    points = sorted(
        (t["values"][x_index], t["values"][y_index])
        for t in data["trials"]
        if t["number"] in pareto and t["values"]
    )
    return [p[0] for p in points], [p[1] for p in points]


def _axes(data: dict[str, Any]) -> tuple[int, int] | None:
    """(x index, y index) into the objectives: the cost on x, the quality on y."""
    if len(data["objectives"]) != 2:
        return None
    maximized = [d == "maximize" for d in data["directions"]]
    y = maximized.index(True) if any(maximized) else 0
    return 1 - y, y


def front_figure(data: dict[str, Any]) -> Any:
    """A plotly figure, or None when the study does not have two objectives."""
    import plotly.graph_objects as go

    axes = _axes(data)
    if axes is None:
        return None
    x_index, y_index = axes
    names = data["objectives"]
    figure = go.Figure()
    for name, colour, (marker, _) in SERIES:
        trials = _points(data)[name]
        if not trials:
            continue
        figure.add_trace(
            go.Scatter(
                x=[t["values"][x_index] for t in trials],
                y=[t["values"][y_index] for t in trials],
                mode="markers+text" if name != "trials" else "markers",
                text=[str(t["number"]) for t in trials],
                textposition="top center",
                name=name,
                marker={"color": colour, "symbol": marker, "size": 10 if name != "trials" else 7},
                hovertemplate=f"trial %{{text}}<br>{names[x_index]} %{{x:,.4g}}<br>{names[y_index]} %{{y:.4g}}"
                "<extra></extra>",
            )
        )
    xs, ys = _front_line(data, x_index, y_index)
    figure.add_trace(
        go.Scatter(
            x=xs, y=ys, mode="lines", line={"shape": "hv", "color": "#d6452b", "width": 1}, name="front"
        )
    )
    figure.update_layout(
        xaxis_title=names[x_index],
        yaxis_title=names[y_index],
        height=460,
        margin={"t": 30},
        template="plotly_white",
    )
    if _wide(data, x_index):
        figure.update_xaxes(type="log")
    return figure


def _wide(data: dict[str, Any], index: int) -> bool:
    """A log axis when the values span more than a factor of 10 (scale factors make flops do so)."""
    values = [
        t["values"][index] for trials in _points(data).values() for t in trials if t["values"][index] > 0
    ]
    return bool(values) and max(values) > 10 * min(values)


def front_png(data: dict[str, Any], path: Path) -> Path | None:
    """The same plot with matplotlib, written to ``path`` (None for a study without two objectives)."""
    import matplotlib.pyplot as plt

    axes = _axes(data)
    if axes is None:
        return None
    x_index, y_index = axes
    figure, ax = plt.subplots(figsize=(8, 5.5))
    for name, colour, (_, marker) in SERIES:
        trials = _points(data)[name]
        if not trials:
            continue
        xs = [t["values"][x_index] for t in trials]
        ys = [t["values"][y_index] for t in trials]
        ax.scatter(xs, ys, c=colour, marker=marker, s=50 if name != "trials" else 25, label=name, zorder=3)
        if name != "trials":
            for trial, x, y in zip(trials, xs, ys):
                ax.annotate(
                    str(trial["number"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
    xs, ys = _front_line(data, x_index, y_index)
    ax.step(xs, ys, where="post", color="#d6452b", linewidth=1, label="front", zorder=2)
    if _wide(data, x_index):
        ax.set_xscale("log")
    ax.set_xlabel(data["objectives"][x_index])
    ax.set_ylabel(data["objectives"][y_index])
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
