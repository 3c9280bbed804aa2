"""``nas train``: search small, train big. A study's trial (or any candidate), optionally scaled, trained from
scratch with the space's recipe into a run directory that ``nas export --run`` and ``nas report --run`` read."""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path
from typing import Any

from ..errors import NasError
from .common import human, print_json

EXAMPLES = """\
examples:
  nas train --study studies/convops --trial 7                       trial 7's model, trained from scratch
  nas train --study studies/convops --trial 7 --flops 2M            scaled (dWr) to about 2M flops
  nas train --study studies/convops --trial 7 --factor 4 --epochs 30 --set train.lr=0.003
  nas train --study studies/convops --trial 7 --init trial --epochs 4     continue from the trial's weights
  nas train --space convops.yaml --candidate candidate.json --factor 2    any candidate, without a study
  nas export --run studies/convops/runs/trial7-flops2M --out model.pt     then export it
  nas report --run studies/convops/runs/trial7-flops2M

Scaling composes as a factor on the base model: trial 7 at scale s, trained with --factor f, is the space's
base model scaled by s*f with the space's rule (scaling.rule, default dWr; --rule changes it for a trial at
scale 1), with the same operator per group. --flops TARGET searches the factor whose rounded model's flops are
closest to TARGET (depths, widths and resolution are rounded, so a target is met within that rounding) and
reports the achieved flops and their ratio to TARGET.

The run directory (default: STUDY/runs/trialN[-xF|-flopsT], or studies/SPACE/runs/NAME for --candidate)
holds run.json, space.yaml, candidate.json, epochs.json, metrics.json (final validation metrics, costs of
the deployed model, latency), weights.pt and log.txt. Running the same command again resumes an interrupted
run from its last finished epoch (after kill -9 too); a finished run is left as it is.
"""

UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "t": 1e12, "T": 1e12}


def parse_count(text: str) -> float:
    """``8e6``, ``8M``, ``1.5G`` -> a number of flops."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", text)
    if not match or not float(match.group(1)) > 0:
        raise NasError(f"--flops {text!r}: expected a positive number such as 8e6, 8M or 1.5G")
    return float(match.group(1)) * UNITS[match.group(2)]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a trial's (or any) candidate, optionally scaled to a flops target, into a run directory",
        description="Rebuild a study trial's candidate (or one from a JSON file), optionally scale it with the "
        "space's compound scaling rule, and train it from scratch with the space's recipe and the trial pipeline.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("what to train")
    source.add_argument("--study", metavar="DIR", help="a study directory (with --trial)")
    source.add_argument(
        "--trial", type=int, metavar="N", help="the trial of --study whose candidate to train"
    )
    source.add_argument(
        "--storage", metavar="URL", help="Optuna storage URL when the study is not in DIR's journal"
    )
    source.add_argument("--space", metavar="SPACE", help="a space file or built-in space (with --candidate)")
    source.add_argument(
        "--candidate",
        metavar="FILE",
        help="a candidate JSON file (a trial's candidate.json, or written by hand)",
    )
    scale = parser.add_argument_group("scaling (fast compound scaling, composed with the candidate's scale)")
    size = scale.add_mutually_exclusive_group()
    size.add_argument("--factor", type=float, metavar="S", help="scale the candidate's flops by S")
    size.add_argument(
        "--flops", metavar="TARGET", help="scale to the factor whose flops come closest (8e6, 8M)"
    )
    scale.add_argument("--rule", metavar="RULE", help="scaling rule (default: the space's scaling.rule)")
    recipe = parser.add_argument_group("training (the space's train section unless overridden)")
    recipe.add_argument("--epochs", type=int, metavar="E", help="= --set train.epochs=E")
    recipe.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key of the space, repeatable (e.g. --set train.lr=0.003 --set train.device=cuda)",
    )
    recipe.add_argument(
        "--init",
        choices=("scratch", "trial"),
        default="scratch",
        help="start from a fresh initialization (default) or from the trial's weights (unscaled only)",
    )
    parser.add_argument("--out", metavar="DIR", help="the run directory (default: see below)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(run=run)


def _check_arguments(args: argparse.Namespace) -> None:
    if bool(args.study) == bool(args.space):
        raise NasError("give --study DIR --trial N, or --space SPACE --candidate FILE")
    if args.study and (args.trial is None or args.candidate):
        raise NasError("--study needs --trial N (and no --candidate)")
    if args.space and (not args.candidate or args.trial is not None or args.storage):
        raise NasError("--space needs --candidate FILE (--trial and --storage are for --study)")
    if args.init == "trial" and not args.study:
        raise NasError("--init trial needs --study and --trial")
    if args.epochs is not None and args.epochs < 1:
        raise NasError(f"--epochs {args.epochs}: expected at least 1")


def short_count(value: float) -> str:
    """8e6 -> '8M', 1.5e9 -> '1.5G', 640000 -> '640K' (for directory names)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _default_out(args: argparse.Namespace, space_name: str, flops: float | None) -> Path:
    suffix = (
        f"-x{args.factor:g}" if args.factor is not None else (f"-flops{short_count(flops)}" if flops else "")
    )
    if args.init == "trial":
        suffix += "-init-trial"
    if args.study:
        return Path(args.study) / "runs" / f"trial{args.trial}{suffix}"
    return Path("studies") / space_name / "runs" / f"{Path(args.candidate).stem}{suffix}"


def _source(args: argparse.Namespace) -> tuple[dict[str, Any], Any, Any, str | None, Path | None]:
    """(source record, the space's raw data, the base candidate, the rule that scaled it, the trial's weights)."""
    from ..run import read_candidate, read_candidate_file, study_trial

    if args.study:
        trial = study_trial(Path(args.study), args.trial, args.storage, need_weights=args.init == "trial")
        base = read_candidate(trial.candidate, f"trial {trial.number}")
        weights = trial.weights if args.init == "trial" else None
        source = {
            "study": str(args.study),
            "trial": trial.number,
            "trial_state": trial.state,
            "trial_metrics": trial.objective_metrics(),
        }
        return source, trial.space.raw, base, trial.space.scaling.rule, weights
    from ..space import load_space

    space = load_space(args.space, [])
    candidate = read_candidate_file(Path(args.candidate))
    return {"candidate": str(args.candidate), "space_file": space.source}, space.raw, candidate, None, None


def run(args: argparse.Namespace) -> int:
    from ..run import plan_run, run_space, train_run
    from ..trial import TrialContext

    _check_arguments(args)
    flops = parse_count(args.flops) if args.flops is not None else None
    source, raw, base, base_rule, weights = _source(args)
    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs is not None else [])
    space = run_space(raw, overrides, args.rule)
    echo = None if args.quiet or args.json else _Progress(space.train.epochs)
    if echo:
        echo(f"loading {space.data.name} data")
    context = TrialContext.create(space)
    request = plan_run(
        space,
        base,
        source,
        context.info.input_shape,
        factor=args.factor,
        flops=flops,
        base_rule=base_rule,
        init_weights=weights,
        overrides=overrides,
    )
    out = Path(args.out) if args.out else _default_out(args, space.name, flops)
    if echo:
        echo(
            f"run {out}: {_what(request.record)}; {_factor_line(request.record)}; {space.train.epochs} epochs"
        )
    result = train_run(request, out, context=context, echo=echo)
    data = {"run": str(out), **result.record, "metrics": result.metrics, "already_done": result.already_done}
    data.pop("identity", None)
    if args.json:
        print_json(data)
        return 0
    if result.already_done:
        print(f"run {out} is already trained (remove it or choose another --out to train again)")
    print(_summary(space, result.metrics, result.record))
    print(f"next: nas export --run {out} --out model.pt   (nas report --run {out})")
    return 0


class _Progress:
    """Log lines with the elapsed time, and the time left estimated from the epochs so far."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.started, self.first_epoch = epochs, time.perf_counter(), None

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        match = re.match(r"epoch (\d+)/(\d+):", message)
        if match:
            epoch = int(match.group(1))
            if self.first_epoch is None:  # a resumed run starts after its checkpoint's epoch
                self.first_epoch = epoch - 1
            done = epoch - self.first_epoch
            left = (self.epochs - epoch) * elapsed / max(done, 1)
            message += f"   ({elapsed:.0f}s, about {left:.0f}s left)"
        print(f"[{elapsed:6.1f}s] {message}", flush=True)


def _what(record: dict[str, Any]) -> str:
    source = record["source"]
    if "trial" in source:
        return f"trial {source['trial']} of {source['study']}"
    return f"candidate {source['candidate']}"


def _factor_line(record: dict[str, Any]) -> str:
    """'x4 (dWr), flops 6.15M' or 'flops target 6.00M: x3.87 (dWr) -> 6.02M = 1.003 x target'."""
    factor, rule, flops = record.get("factor", 1.0), record.get("rule", "dWr"), record.get("flops")
    if record.get("flops_target"):
        return (
            f"flops target {human(record['flops_target'])}: x{factor:.4g} ({rule}) -> {human(flops)} "
            f"= {flops / record['flops_target']:.3f} x target{_steps(record)} (base {human(record['base_flops'])})"
        )
    scaled = f"x{factor:g} ({rule})" if not math.isclose(factor, 1.0) else "not scaled"
    return f"{scaled}, flops {human(flops)} (base {human(record['base_flops'])})"


def _steps(record: dict[str, Any]) -> str:
    """', the nearest models 0.71M and 1.21M' (what the rounding allows around the target)."""
    steps = record.get("flops_steps") or []
    if len(steps) != 2 or None in steps or steps[0] == steps[1]:
        return ""
    return f"; the nearest scaled models have {human(steps[0])} and {human(steps[1])}"


def _summary(space: Any, metrics: dict[str, Any], record: dict[str, Any]) -> str:
    quality = [m for m in ("accuracy", "psnr", "ssim", "loss") if isinstance(metrics.get(m), (int, float))]
    lines = [
        "validation: "
        + "  ".join(f"{m} {metrics[m]:.4f}" for m in quality)
        + f"  ({int(metrics.get('val_size', 0))} samples)",
        f"deployed model: flops {metrics['flops']:,} ({human(metrics['flops'])})  params {metrics['params']:,}  "
        f"acts {metrics['acts']:,}  input {tuple(metrics['input_shape'])}"
        + (f"  latency {metrics['latency_ms']:.3f} ms" if "latency_ms" in metrics else ""),
        _factor_line(record),
    ]
    trial = record["source"].get("trial_metrics")
    if trial:
        lines.append("the trial in the search: " + "  ".join(f"{k} {_fmt(v)}" for k, v in trial.items()))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and abs(value) < 1000 else human(value)
