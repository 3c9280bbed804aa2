"""``nas report``: the trials of a study, its Pareto front, and plots written into the study dir."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from .common import console_for_tables, human, print_json

EXAMPLES = """\
examples:
  nas report --study studies/convops
  nas report --study studies/convops --json > report.json
  nas report --study studies/convops --no-plots
  nas report --run studies/convops/runs/trial7-flops8M    a model trained by `nas train`

Writes report.html (Pareto front, optimization history, parameter importances; works offline) and one PNG
per plot into the study directory.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="table of trials, Pareto front and plots of a study",
        description="Summarize a study: every trial with its operators, scale, objectives and costs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--study", metavar="DIR", help="the study directory (e.g. studies/convops)")
    parser.add_argument("--run", dest="run_dir", metavar="DIR", help="a run directory written by `nas train`")
    parser.add_argument(
        "--storage", metavar="URL", help="Optuna storage URL when the study is not in DIR's journal"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-plots", action="store_true", help="do not write plots")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import NasError
    from ..search.report import study_report, write_plots
    from ..search.study import load_existing_study

    if bool(args.study) == bool(args.run_dir):
        raise NasError("give --study DIR or --run DIR")
    if args.run_dir:
        from .run_report import report_run

        return report_run(Path(args.run_dir), args.json)

    space, study = load_existing_study(Path(args.study), args.storage)
    data = study_report(space, study)
    plots = [] if args.no_plots else write_plots(space, study, Path(args.study))
    if args.json:
        data["plots"] = [str(p) for p in plots]
        print_json(data)
    else:
        print_report(data, plots)
    return 0


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else human(value)
    return human(value) if isinstance(value, int) else str(value)


def print_report(data: dict[str, Any], plots: list[Path] | None = None) -> None:
    from ..search.report import operator_mix

    console = console_for_tables()
    pareto = set(data["pareto"])
    table = Table(
        title=f"study {data['study']}: {len(data['trials'])} trials, objectives "
        + ", ".join(f"{o} ({d})" for o, d in zip(data["objectives"], data["directions"]))
    )
    costs = [c for c in ("flops", "params", "acts") if c not in data["objectives"]]
    for column in ("#", "state", "operators", "scale", *data["objectives"], *costs, "note"):
        table.add_column(column, justify="left" if column in ("state", "operators", "note") else "right")
    for trial in data["trials"]:
        metrics = trial["metrics"]
        # a stopped or infeasible trial has no objective values: show what it measured (partial quality, costs)
        values = trial["values"] or [metrics.get(objective) for objective in data["objectives"]]
        candidate = trial.get("candidate") or {}
        note = trial.get("error", "")
        if trial["number"] in pareto:
            note = "Pareto front" if len(data["objectives"]) > 1 else "best"
        if trial.get("baseline"):
            note = f"baseline{', ' + note if note else ''}"
        table.add_row(
            str(trial["number"]),
            trial["state"],
            operator_mix(candidate),
            f"{candidate['scale']:g}" if "scale" in candidate else "-",
            *[_value(v) if v is not None else "-" for v in values],
            *[_value(metrics.get(c, "-")) for c in costs],
            note,
        )
    console.print(table)
    console.print(f"Pareto front: trials {data['pareto']}" if data["pareto"] else "no completed trial yet")
    for line in baseline_lines(data.get("baselines") or {}):
        console.print(line, highlight=False)
    for path in plots or []:
        console.print(f"wrote {path}")


def baseline_lines(section: dict[str, Any]) -> list[str]:
    """The answer to "did the search beat plain convs?": one line per Pareto model against its baseline."""
    if not section.get("enabled", True):
        return ["baselines: off (search.baselines: false), so nothing says whether the operators help"]
    if section.get("note"):
        return [f"baselines: {section['note']}"]
    metric, cost = section["metric"], section.get("cost") or "cost"
    lines = [
        f"Pareto models against plain convs of equal or higher {cost} ({metric}, 95% interval of the difference):"
    ]
    scale = 100.0 if metric == "accuracy" else 1.0
    unit = " points" if metric == "accuracy" else (" dB" if metric == "psnr" else "")
    themselves = [str(e["trial"]) for e in section["comparisons"] if e["verdict"] == "baseline"]
    if themselves:
        lines.append(f"  on the front as baselines themselves (plain convs): trials {', '.join(themselves)}")
    for entry in section["comparisons"]:
        if entry["verdict"] == "baseline":
            continue
        head = (
            f"  trial {entry['trial']} ({_value(entry[metric])}, {cost} {human(entry['cost'])}) vs baseline "
            f"{entry['baseline']} ({_value(entry['baseline_' + metric])}, {cost} {human(entry['baseline_cost'])})"
        )
        if entry.get("difference") is None:
            lines.append(f"{head}: {entry['verdict']}")
            continue
        low, high = (scale * v for v in entry["interval"])
        matched = "" if entry["matched"] == "equal or higher cost" else f" ({entry['matched']})"
        lines.append(
            f"{head}: {scale * entry['difference']:+.2f}{unit} [{low:+.2f}, {high:+.2f}] -> {entry['verdict']}{matched}"
        )
    return lines
