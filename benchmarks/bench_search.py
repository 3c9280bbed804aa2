"""Search quality per unit of training (issue 15): hypervolume of the feasible trained front against cumulative
training epochs, for random sampling, TPE at full budget and TPE with early stopping (MO-ASHA), over seeds.

Strategies (each run is ``nas search`` on the space with ``search.seed=<seed>`` and):

- ``random``: ``search.sampler=random``, no early stopping;
- ``tpe``: ``search.sampler=tpe``, no early stopping: every trial trains ``train.epochs``;
- ``tpe_es``: ``search.sampler=tpe`` with ``search.early_stopping`` (the space's own setting if it has one, else
  ``{min_epochs: 1, reduction_factor: 3}``), ``--es-trials`` trials (default twice ``--trials``: a stopped trial
  costs a few epochs, and the run must go on long enough to show when it reaches TPE's final front).

Epochs of a trial: ``train.epochs`` if it finished training, ``stopped_at_epoch`` if early stopping stopped it,
0 if it was infeasible (never trained), the epochs its log shows if it failed. Trials are taken in the order they
finished; after each, the hypervolume of the front of the feasible, fully trained trials (COMPLETE, not
infeasible) is computed, exactly (2-D: sort and sum rectangles), in a normalized space where both objectives are
minimized (``normalization``):

- cost ``c = (log10 cost - log10 lo) / (log10 hi - log10 lo)``, ``lo``/``hi`` the smallest and largest cost of the
  feasible candidates sampled by every run reported (costs are known before training, trained or not);
- quality as a loss ``e`` (``1 - accuracy``, ``-psnr`` in dB, ``1 - ssim``, ``loss``), ``q = (e - ideal) /
  (ref - ideal)``: ``ideal`` the best ``e`` of any trained trial of those runs, ``ref`` the worst ``e`` on the
  front of all of them together (its cheapest model) plus 10% of that range;
- reference point (1, 1). Points beyond it add nothing; nothing is clipped otherwise.

Ratios between hypervolumes depend only on the reference point (in the metrics' own units) and the log of the
cost; the bounds are written to the JSON. The large random run (``--large-random-trials``, seed
``--large-random-seed``) is cached as its trial points in ``results/search_<space>_large_random.json`` and reused
while the space's settings (other than ``search.*``) are unchanged; ``--skip-large-random`` leaves it out (and
its ratio) unless cached.

    python benchmarks/bench_search.py --space convops.yaml [--seeds 0 1 2] [--trials N] [--es-trials N]
        [--large-random-trials 120] [--work-dir studies/bench_search] [--strategies random tpe tpe_es]
        [--set key=value ...] [--no-run] [--skip-large-random] [--results-dir benchmarks/results]

Studies go to ``<work-dir>/<space>/<strategy>_seed<S>``; a run that finished is reused (a rerun resumes), so the
script can be stopped and started again. Writes ``results/search_<space>.json`` and ``results/search_<space>.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_EARLY_STOPPING = {"min_epochs": 1, "reduction_factor": 3}
COLOURS = {"random": "tab:grey", "tpe": "tab:blue", "tpe_es": "tab:orange"}
REFERENCE_MARGIN = 0.1  # the quality reference point lies 10% of the front's range beyond its worst point


# -- hypervolume ----------------------------------------------------------------------------------------------
def hypervolume_2d(points: list[tuple[float, float]], reference: tuple[float, float] = (1.0, 1.0)) -> float:
    """The area dominated by ``points`` (both coordinates minimized) and bounded by ``reference``, exactly: the
    points sorted by x, each one that improves on the best y so far adds the rectangle from its x to the
    reference and from its y to that best y."""
    rx, ry = reference
    area, best_y = 0.0, ry
    for x, y in sorted((x, y) for x, y in points if x < rx and y < ry):
        if y < best_y:
            area += (rx - x) * (best_y - y)
            best_y = y
    return area


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (both minimized), by x."""
    out: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not out or y < out[-1][1]:
            out.append((x, y))
    return out


def epochs_to_reach(trajectory: list[dict[str, Any]], target: float) -> float | None:
    """The cumulative epochs after which a run's hypervolume first reaches ``target`` (None: never)."""
    for step in trajectory:
        if step["hv"] >= target - 1e-12:
            return step["epochs"]
    return None


# -- a study's trials as points -------------------------------------------------------------------------------
def as_loss(metric: str, value: float) -> float:
    """The quality metric as a quantity to minimize, in the metric's units."""
    return {"accuracy": 1.0 - value, "psnr": -value, "ssim": 1.0 - value}.get(metric, value)


def _failed_epochs(study_dir: Path, number: int) -> int:
    log = study_dir / "trials" / str(number) / "log.txt"
    return len(re.findall(r"^.*epoch \d+/\d+:", log.read_text(), re.M)) if log.exists() else 0


def trial_points(space, study: optuna.Study, study_dir: Path) -> list[dict[str, Any]]:
    """Every finished trial in the order it finished: its kind, epochs, cost and quality (metric units)."""
    from nas.search.baselines import cost_objective, quality_objective

    quality_metric, _ = quality_objective(space)
    cost_metric = cost_objective(space)
    names = [o.metric for o in space.objectives]
    done = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    done = [t for t in done if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    points = []
    for trial in sorted(done, key=lambda t: (t.datetime_complete, t.number)):
        attrs = trial.user_attrs
        metrics = attrs.get("metrics", {})
        values = dict(zip(names, trial.values)) if trial.values else {}
        cost = values.get(cost_metric, metrics.get(cost_metric))
        quality = values.get(quality_metric, metrics.get(quality_metric))
        infeasible = bool(attrs.get("infeasible")) or any(c > 0 for c in attrs.get("constraints", []))
        if trial.state == TrialState.COMPLETE and infeasible:
            kind, epochs, quality = "infeasible", 0, None
        elif trial.state == TrialState.COMPLETE:
            kind, epochs = "trained", space.train.epochs
        elif trial.state == TrialState.PRUNED:
            kind, epochs = "stopped", int(attrs.get("stopped_at_epoch", metrics.get("stopped_at_epoch", 0)))
        else:
            kind, epochs, quality = "failed", _failed_epochs(study_dir, trial.number), None
        points.append(
            {
                "number": trial.number,
                "kind": kind,
                "baseline": bool(attrs.get("baseline")),
                "epochs": epochs,
                "cost": None if cost is None else float(cost),
                "quality": None if quality is None else float(quality),
                "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds(),
            }
        )
    return points


# -- normalization --------------------------------------------------------------------------------------------
def normalization(space, points: list[dict[str, Any]]) -> dict[str, Any]:
    """Bounds from the trial points of every run reported (see the module docstring)."""
    from nas.search.baselines import cost_objective, quality_objective

    quality_metric, _ = quality_objective(space)
    costs = [p["cost"] for p in points if p["kind"] != "infeasible" and p["cost"]]
    trained = [
        (p["cost"], as_loss(quality_metric, p["quality"]))
        for p in points
        if p["kind"] == "trained" and p["cost"] and p["quality"] is not None
    ]
    if not costs or not trained:
        raise SystemExit("no trained feasible trial to normalize by")
    ideal = min(e for _, e in trained)
    worst_on_front = max(e for _, e in front(trained))
    spread = worst_on_front - ideal
    return {
        "cost_metric": cost_objective(space),
        "cost_transform": "log10",
        "cost_lo": min(costs),
        "cost_hi": max(costs),
        "quality_metric": quality_metric,
        "quality_as_loss": {"accuracy": "1 - accuracy", "psnr": "-psnr (dB)", "ssim": "1 - ssim"}.get(
            quality_metric, quality_metric
        ),
        "loss_ideal": ideal,
        "loss_reference": worst_on_front + REFERENCE_MARGIN * (spread if spread > 0 else abs(ideal) or 1.0),
        "reference_point": [1.0, 1.0],
        "source": "every run reported (large random included): cost over feasible candidates, quality over the"
        " trained trials and their joint front",
        "trial_points": len(points),
    }


def normalize(norm: dict[str, Any], cost: float, quality: float) -> tuple[float, float]:
    lo, hi = math.log10(norm["cost_lo"]), math.log10(norm["cost_hi"])
    c = (math.log10(cost) - lo) / (hi - lo) if hi > lo else 0.0
    e = as_loss(norm["quality_metric"], quality)
    q = (e - norm["loss_ideal"]) / (norm["loss_reference"] - norm["loss_ideal"])
    return c, q


def trajectory(norm: dict[str, Any], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After each finished trial: the trial, cumulative epochs, the hypervolume of the trained front so far."""
    out, epochs, trained = [], 0, []
    for point in points:
        epochs += point["epochs"]
        if point["kind"] == "trained" and point["cost"] and point["quality"] is not None:
            trained.append(normalize(norm, point["cost"], point["quality"]))
        out.append({"trial": point["number"], "epochs": epochs, "hv": round(hypervolume_2d(trained), 6)})
    return out


# -- running --------------------------------------------------------------------------------------------------
def strategy_overrides(strategy: str, space_file: str, extra: list[str]) -> list[str]:
    from nas.space import load_space

    own = load_space(space_file, extra).search.early_stopping
    stopping = (
        {"min_epochs": own.min_epochs, "reduction_factor": own.reduction_factor}
        if own
        else DEFAULT_EARLY_STOPPING
    )
    flow = "{" + ", ".join(f"{k}: {v}" for k, v in stopping.items()) + "}"
    return {
        "random": ["search.sampler=random", "search.early_stopping=null"],
        "tpe": ["search.sampler=tpe", "search.early_stopping=null"],
        "tpe_es": ["search.sampler=tpe", f"search.early_stopping={flow}"],
    }[strategy]


def run_study(space_file: str, overrides: list[str], study_dir: Path, dry: bool):
    """Run (or resume, or only open) one study; returns (space, study). A study of other settings than the
    space file has now (``search.*`` aside) is refused."""
    from nas.search.local import run_local
    from nas.search.progress import SearchProgress
    from nas.search.study import load_existing_study
    from nas.space import load_space

    space = load_space(space_file, overrides)
    if not dry:
        progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False)
        print(f"== {study_dir}: {' '.join(overrides)}", flush=True)
        run_local(space, study_dir, progress)
    held, study = load_existing_study(study_dir)
    if fingerprint(held) != fingerprint(space):  # one report never mixes two versions of a space
        raise SystemExit(f"{study_dir} holds a study of other settings than {space_file} has now: remove it")
    return held, study


def run_wall_seconds(study: optuna.Study) -> float:
    """First trial start to last trial end (a resumed run includes the pause)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start]
    if not trials:
        return 0.0
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def fingerprint(space) -> str:
    from nas.search.study import RESUMABLE_CHANGES, comparable

    flat = comparable(space)
    keep = {
        k: v
        for k, v in flat.items()
        if not k.startswith("search.") and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)
    }
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def large_random(args, space, work: Path) -> dict[str, Any] | None:
    """The reference run's trial points: from the cache if it matches, else run (resumable) and cached; None
    with --skip-large-random and no matching cache."""
    path = args.results_dir / f"search_{space.name}_large_random.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached["fingerprint"] == fingerprint(space) and cached["trials"] >= args.large_random_trials:
            print(f"large random run: cached in {path.name} ({cached['trials']} trials)", flush=True)
            return cached
        print(f"large random run: {path.name} is for other settings", flush=True)
    if args.skip_large_random:
        return None
    overrides = [
        *args.set,
        "search.sampler=random",
        "search.early_stopping=null",
        f"search.seed={args.large_random_seed}",
        f"search.trials={args.large_random_trials}",
    ]
    study_dir = work / f"large_random_seed{args.large_random_seed}"
    run_space, study = run_study(args.space, overrides, study_dir, args.no_run)
    points = trial_points(run_space, study, study_dir)
    data = {
        "space": space.name,
        "fingerprint": fingerprint(space),
        "overrides": overrides,
        "trials": len(points),
        "seed": args.large_random_seed,
        "wall_s": round(run_wall_seconds(study), 1),
        "epochs": sum(p["epochs"] for p in points),
        "points": points,
    }
    if not args.no_run:
        path.write_text(json.dumps(data, indent=1) + "\n")
    return data


# -- summary --------------------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]], large_hv: float | None, default: str | None) -> dict[str, Any]:
    by = {}
    for run in runs:
        by.setdefault(run["strategy"], []).append(run)
    summary: dict[str, Any] = {"strategies": {}}
    for strategy, group in by.items():
        summary["strategies"][strategy] = {
            "runs": len(group),
            "final_hv_median": _median([r["final_hv"] for r in group]),
            "final_hv_min": min(r["final_hv"] for r in group),
            "final_hv_max": max(r["final_hv"] for r in group),
            "epochs_median": _median([r["epochs"] for r in group]),
            "wall_s_median": _median([r["wall_s"] for r in group]),
            "hv_over_large_random_median": _median([r["final_hv"] / large_hv for r in group])
            if large_hv
            else None,
        }
    full = {r["seed"]: r for r in by.get("tpe", [])}
    fractions = []
    for run in by.get("tpe_es", []):
        if run["seed"] not in full or full[run["seed"]]["final_hv"] <= 0:  # nothing to reach
            continue
        reference = full[run["seed"]]
        reached = epochs_to_reach(run["trajectory"], reference["final_hv"])
        fraction = math.inf if reached is None else reached / reference["epochs"]
        fractions.append({"seed": run["seed"], "epochs_to_reach": reached, "fraction": fraction})
    if fractions:
        median = _median([f["fraction"] for f in fractions])
        summary["es_reaches_tpe_final"] = {
            "per_seed": [
                {**f, "fraction": None if math.isinf(f["fraction"]) else f["fraction"]} for f in fractions
            ],
            "fraction_median": None if math.isinf(median) else median,
            "target": 0.4,
            "met": not math.isinf(median) and median <= 0.4,
        }
    if default in summary["strategies"] and large_hv:
        ratio = summary["strategies"][default]["hv_over_large_random_median"]
        summary["default_vs_large_random"] = {"strategy": default, "ratio_median": ratio, "target": 0.95}
        summary["default_vs_large_random"]["met"] = ratio >= 0.95
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict[str, Any], large: dict[str, Any] | None, large_hv: float | None) -> None:
    print(
        "\n| strategy | runs | final HV (median, min-max) | epochs (median) | wall s (median) | HV / large random |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for strategy, row in summary["strategies"].items():
        print(
            f"| {strategy} | {row['runs']} | {row['final_hv_median']:.4f} ({row['final_hv_min']:.4f}-"
            f"{row['final_hv_max']:.4f}) | {row['epochs_median']:g} | {row['wall_s_median']:.0f} | "
            f"{_fmt(row['hv_over_large_random_median'], '.3f')} |"
        )
    if large:
        print(
            f"| large random ({large['trials']} trials) | 1 | {large_hv:.4f} | {large['epochs']} | "
            f"{large['wall_s']:.0f} | 1 |"
        )
    es = summary.get("es_reaches_tpe_final")
    if es:
        per_seed = ", ".join(
            f"seed {f['seed']}: " + ("not reached" if f["fraction"] is None else f"{f['fraction']:.2f}")
            for f in es["per_seed"]
        )
        median = "not reached" if es["fraction_median"] is None else f"{es['fraction_median']:.2f}"
        print(
            f"\nTPE+ES reaches TPE-full's final HV with {median} of its epochs (median; {per_seed}); "
            f"target <= 0.40: {'met' if es['met'] else 'NOT met'}"
        )
    default = summary.get("default_vs_large_random")
    if default:
        print(
            f"default search ({default['strategy']}) final HV / large random HV: {default['ratio_median']:.3f} "
            f"(median); target >= 0.95: {'met' if default['met'] else 'NOT met'}"
        )


def plot(
    path: Path, runs: list[dict[str, Any]], large: dict[str, Any] | None, large_hv: float | None, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(8, 5))
    labelled = set()
    for run in runs:
        xs = [0] + [s["epochs"] for s in run["trajectory"]]
        ys = [0.0] + [s["hv"] for s in run["trajectory"]]
        label = None if run["strategy"] in labelled else run["strategy"]
        labelled.add(run["strategy"])
        ax.step(xs, ys, where="post", color=COLOURS.get(run["strategy"]), alpha=0.85, label=label)
    if large:
        label = f"large random front ({large['trials']} trials, {large['epochs']} epochs)"
        ax.axhline(large_hv, color="black", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel("cumulative training epochs")
    ax.set_ylabel("hypervolume of the trained front (normalized, ref (1, 1))")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- main -----------------------------------------------------------------------------------------------------
def run_overrides(args, strategy: str, seed: int, trials: int) -> list[str]:
    return [
        *args.set,
        *strategy_overrides(strategy, args.space, args.set),
        f"search.seed={seed}",
        f"search.trials={trials}",
    ]


def default_strategy(space) -> str | None:
    if space.search.sampler == "random":
        return "random"
    if space.search.sampler == "tpe":
        return "tpe_es" if space.search.early_stopping else "tpe"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="convops.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, help="trials of random and tpe (default: the space's)")
    parser.add_argument("--es-trials", type=int, help="trials of tpe_es (default: twice --trials)")
    parser.add_argument("--large-random-trials", type=int, default=120)
    parser.add_argument("--large-random-seed", type=int, default=1000)
    parser.add_argument("--strategies", nargs="+", default=["random", "tpe", "tpe_es"], choices=list(COLOURS))
    parser.add_argument("--work-dir", type=Path, default=Path("studies/bench_search"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run"
    )
    parser.add_argument("--no-run", action="store_true", help="only read the studies already in --work-dir")
    parser.add_argument(
        "--skip-large-random",
        action="store_true",
        help="do not run the large random run (use its cache if any)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON, PNG and cache go")
    args = parser.parse_args(argv)

    from nas.space import load_space

    started = time.perf_counter()
    space = load_space(args.space, args.set)
    trials = args.trials or space.search.trials
    es_trials = args.es_trials or 2 * trials
    work = args.work_dir / space.name
    runs = []
    for strategy in args.strategies:
        for seed in args.seeds:
            count = es_trials if strategy == "tpe_es" else trials
            overrides = run_overrides(args, strategy, seed, count)
            study_dir = work / f"{strategy}_seed{seed}"
            if args.no_run and not study_dir.exists():
                continue
            run_space, study = run_study(args.space, overrides, study_dir, args.no_run)
            runs.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "overrides": overrides,
                    "study_dir": str(study_dir),
                    "trials": len(study.trials),
                    "wall_s": round(run_wall_seconds(study), 1),
                    "points": trial_points(run_space, study, study_dir),
                }
            )
    large = large_random(args, space, work)
    norm = normalization(
        space, [p for run in runs for p in run["points"]] + (large["points"] if large else [])
    )
    large_hv = None
    if large:
        trained = [
            p for p in large["points"] if p["kind"] == "trained" and p["cost"] and p["quality"] is not None
        ]
        large_hv = hypervolume_2d([normalize(norm, p["cost"], p["quality"]) for p in trained])
    for run in runs:
        steps = trajectory(norm, run["points"])
        run["epochs"] = steps[-1]["epochs"] if steps else 0
        run["final_hv"] = steps[-1]["hv"] if steps else 0.0
        run["trajectory"] = steps
    default = default_strategy(space)
    summary = summarize(runs, large_hv, default)
    print_table(summary, large, large_hv)
    out = args.results_dir / f"search_{space.name}.json"
    data = {
        "benchmark": "search: hypervolume of the trained front against cumulative training epochs",
        "space": space.name,
        "space_file": args.space,
        "settings": {
            "seeds": args.seeds,
            "trials": trials,
            "es_trials": es_trials,
            "train_epochs": space.train.epochs,
            "strategies": {s: strategy_overrides(s, args.space, args.set) for s in args.strategies},
            "overrides": args.set,
            "default_strategy": default,
            "large_random_trials": large["trials"] if large else None,
            "large_random_seed": args.large_random_seed,
        },
        "normalization": norm,
        "large_random": {k: large[k] for k in ("trials", "seed", "wall_s", "epochs")} | {"hv": large_hv}
        if large
        else None,
        "summary": summary,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": __import__("os").cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "wall_s_this_invocation": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    out.write_text(json.dumps(data, indent=1) + "\n")
    plot(out.with_suffix(".png"), runs, large, large_hv, f"{space.name}: hypervolume per training epoch")
    print(f"\nwrote {out} and {out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
