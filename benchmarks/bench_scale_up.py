"""Do the searched operators keep their advantage when the model is scaled up?

Takes a study's most accurate Pareto model that uses at least one operator other than ``conv`` (searched at a
small size), trains it with ``nas train`` scaled by the space's rule (dWr) to ``--factors`` times its flops, and
trains the plain-conv candidate at the same scale, scaled to the same flops targets, with the same recipe (the
space's ``train:`` section, ``--epochs``). Per factor: accuracy (or PSNR) with its 95% interval, the difference
searched - plain with its 95% interval (Newcombe's for accuracy, standard errors for PSNR: ``nas.search.uncertainty``)
and the verdict, flops, acts, params and CPU latency (batch 1, one thread) of both deployed models.

    python benchmarks/bench_scale_up.py --study studies/convops [--factors 1 2 4] [--epochs 8] \
        [--runs /tmp/nas-scale-up] [--out benchmarks/results/scale_up_cpu.json]

Runs are ``nas train`` run directories under ``--runs``: an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from nas.cli import main as nas
from nas.search.report import pareto_numbers
from nas.search.study import SPACE_FILE, load_existing_study
from nas.search.uncertainty import quality_difference, quality_interval, verdict

QUALITY = ("accuracy", "psnr")


def choose_trial(study_dir: Path) -> tuple[int, dict[str, Any], str, list[dict[str, Any]]]:
    """(number, candidate, quality metric, the front) of the most accurate Pareto trial with an operator."""
    space, study = load_existing_study(study_dir)
    metric = next(o.metric for o in space.objectives if o.metric in QUALITY)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    front = []
    for number in pareto_numbers(study):
        attrs = trials[number].user_attrs
        front.append(
            {
                "trial": number,
                metric: attrs["metrics"][metric],
                "flops": attrs["metrics"]["flops"],
                "candidate": attrs["candidate"],
            }
        )
    searched = [t for t in front if any(a["name"] != "conv" for a in t["candidate"]["operators"].values())]
    if not searched:
        raise SystemExit(f"{study_dir}: no Pareto trial uses an operator other than conv; nothing to compare")
    best = max(searched, key=lambda t: (t[metric], -t["trial"]))
    return best["trial"], best["candidate"], metric, front


def train(arguments: list[str]) -> dict[str, Any]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = nas(["train", *arguments, "--json"])
    if code != 0:
        raise SystemExit(f"nas train {' '.join(arguments)} failed with exit code {code}")
    return json.loads(stdout.getvalue())


def compare(metric: str, searched: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    difference = quality_difference(metric, searched["metrics"], plain["metrics"])
    return {
        "difference": difference.value,
        "interval": [difference.low, difference.high],
        "verdict": verdict(difference),
    }


def row(metric: str, run: dict[str, Any]) -> dict[str, Any]:
    metrics = run["metrics"]
    interval = quality_interval(metric, metrics)
    return {
        "run": run["run"],
        metric: metrics[metric],
        "interval": [interval.low, interval.high] if interval else None,
        "flops": metrics["flops"],
        "flops_target": run["flops_target"],
        "factor": run["factor"],
        "scale": run["factor"] * run["base_candidate"]["scale"],
        "acts": metrics["acts"],
        "params": metrics["params"],
        "latency_ms": metrics["latency_ms"],
        "train_seconds": metrics["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=Path("studies/convops"))
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the space's train.epochs")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/nas-scale-up"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale_up_cpu.json"))
    args = parser.parse_args()

    number, candidate, metric, front = choose_trial(args.study)
    plain = {
        "scale": candidate["scale"],
        "operators": {g: {"name": "conv", "params": {}} for g in candidate["operators"]},
    }
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "plain.json").write_text(json.dumps(plain))
    common = ["--set", "latency.threads=1", "--set", "latency.batch_size=1"]
    common += [item for override in args.overrides for item in ("--set", override)]
    common += ["--epochs", str(args.epochs)] if args.epochs else []
    started, results = time.perf_counter(), []
    trial_flops = None
    for factor in args.factors:
        searched = train(
            [
                "--study",
                str(args.study),
                "--trial",
                str(number),
                "--factor",
                f"{factor:g}",
                "--out",
                str(args.runs / f"searched-x{factor:g}"),
                *common,
            ]
        )
        trial_flops = trial_flops or searched["base_flops"]
        target = str(searched["metrics"]["flops"])  # the plain model scaled to the searched model's flops
        baseline = train(
            [
                "--space",
                str(args.study / SPACE_FILE),
                "--candidate",
                str(args.runs / "plain.json"),
                "--flops",
                target,
                "--out",
                str(args.runs / f"plain-x{factor:g}"),
                *common,
            ]
        )
        entry = {"factor": factor, "searched": row(metric, searched), "plain": row(metric, baseline)}
        entry["difference"] = compare(metric, searched, baseline)
        results.append(entry)
        print(json.dumps(entry), flush=True)
    report = {
        "study": str(args.study),
        "trial": number,
        "candidate": candidate,
        "metric": metric,
        "trial_flops": trial_flops,
        "pareto_front": front,
        "recipe": {"epochs": args.epochs, "overrides": args.overrides},
        "results": results,
        "seconds": time.perf_counter() - started,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))


def table(report: dict[str, Any]) -> str:
    metric = report["metric"]
    scale = 100.0 if metric == "accuracy" else 1.0
    lines = [
        f"| x | searched {metric} | plain {metric} | difference (95%) | verdict | flops s / p | acts s / p | latency ms s / p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in report["results"]:
        s, p, d = entry["searched"], entry["plain"], entry["difference"]
        lines.append(
            f"| {entry['factor']:g} | {scale * s[metric]:.2f} [{scale * s['interval'][0]:.2f}, {scale * s['interval'][1]:.2f}] "
            f"| {scale * p[metric]:.2f} [{scale * p['interval'][0]:.2f}, {scale * p['interval'][1]:.2f}] "
            f"| {scale * d['difference']:+.2f} [{scale * d['interval'][0]:+.2f}, {scale * d['interval'][1]:+.2f}] "
            f"| {d['verdict']} | {s['flops'] / 1e6:.2f}M / {p['flops'] / 1e6:.2f}M | {s['acts']:,} / {p['acts']:,} "
            f"| {s['latency_ms']:.3f} / {p['latency_ms']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
