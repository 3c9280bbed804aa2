"""Operator speed as ratios to ``nn.Conv2d`` of the same geometry, measured in the same run.

For every registered operator (``operators.names()``, default parameters unless ``--params`` says otherwise) and
each representative shape, four timings are divided by the replaced ``nn.Conv2d``'s:

- train eager: one training step (forward + backward, input gradient included) of the operator in train mode;
- train collapsed: the same step on ``op.collapse()`` (a plain conv of the deployed geometry);
- eval eager: an eval-mode forward under ``no_grad``;
- eval collapsed: the same on ``op.collapse()``.

Each ratio is the median over ``--rounds`` rounds of (variant time / baseline time), the two timed side by
side (``torch.utils.benchmark`` blocks of at least ``--min-run-time`` seconds) so both see the same load from
other processes; a slow variant gets fewer rounds (``--budget``, at least 3). On CPU the default is one thread
timed in process CPU time, which leaves out time spent descheduled (``--threads N`` times wall clock). The
``conv`` operator (the plain conv as an operator, identical math) shows the noise floor of a run; the load
average is recorded with the results. An operator not eligible for a shape is skipped with a printed note.

    python benchmarks/bench_operators.py                 # CPU, writes benchmarks/results/operators_cpu.json
    python benchmarks/bench_operators.py --quick         # fewer, shorter rounds
    python benchmarks/bench_operators.py --device cuda   # the same on CUDA -> operators_cuda.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark

import operators
from operators import ConvSpec

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTED_LIMIT = 1.1  # the weighted conv's training step must stay within 1.1x of nn.Conv2d
KINDS = ("train", "train_collapsed", "eval", "eval_collapsed")
BASELINE = "nn.Conv2d"


@dataclass(frozen=True)
class Shape:
    name: str
    conv: dict[str, Any]  # nn.Conv2d keyword arguments
    input: tuple[int, int, int, int]  # (N, C, H, W)


SHAPES = (
    Shape(
        "dense 64->64 3x3, 32x32",
        dict(in_channels=64, out_channels=64, kernel_size=3, padding=1),
        (8, 64, 32, 32),
    ),
    Shape(
        "depthwise 96 3x3, 56x56",
        dict(in_channels=96, out_channels=96, kernel_size=3, padding=1, groups=96),
        (8, 96, 56, 56),
    ),
)


def train_step_fn(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """One forward + backward of ``module`` (parameter and input gradients), gradients reset first."""
    x = x.detach().clone().requires_grad_(True)

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(grad)

    return step


def eval_forward_fn(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            module(x)

    return forward


def parse_params(entries: list[str]) -> dict[str, dict[str, Any]]:
    """``["large_kernel:large_kernel_size=7", ...]`` -> ``{"large_kernel": {"large_kernel_size": "7"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name, _, assignment = entry.partition(":")
        key, _, value = assignment.partition("=")
        if not (name and key and value):
            raise SystemExit(f"--params expects OPERATOR:NAME=VALUE, got {entry!r}")
        out.setdefault(name, {})[key] = value
    return out


def build_variants(
    shape: Shape, names: list[str], overrides: dict[str, dict[str, Any]], device: torch.device
):
    """The baseline conv, then per eligible operator its four timed callables; notes for the skipped ones."""
    torch.manual_seed(0)
    conv = nn.Conv2d(**shape.conv).to(device)
    x = torch.randn(shape.input, device=device)
    with torch.no_grad():
        grad = torch.randn_like(conv(x))
    variants: dict[tuple[str, str], Callable[[], None]] = {
        (BASELINE, "train"): train_step_fn(conv, x, grad),
        (BASELINE, "eval"): eval_forward_fn(copy.deepcopy(conv).eval(), x),
    }
    info: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    warm_seconds: dict[tuple[str, str], float] = {}
    spec = ConvSpec.from_conv(conv)
    for name in names:
        cls = operators.get(name)
        params = {**cls.param_defaults(), **cls.validate_params(overrides.get(name, {}))}
        reason = cls.eligibility(spec, **params)
        if reason is not None:
            notes.append(f"skipped {name} on {shape.name}: {reason}")
            continue
        try:
            op = cls.from_conv(conv, **params).to(device)
            collapsed = copy.deepcopy(op).eval().collapse()
            op_eval = copy.deepcopy(op).eval()
            calls = {
                "train": train_step_fn(op.train(), x, grad),
                "train_collapsed": train_step_fn(collapsed, x, grad),
                "eval": eval_forward_fn(op_eval, x),
                "eval_collapsed": eval_forward_fn(collapsed, x),
            }
            warm = {
                kind: _timed_call(call) for kind, call in calls.items()
            }  # a failure is reported, not fatal
        except Exception as error:  # noqa: BLE001 - a benchmark reports and goes on
            notes.append(f"skipped {name} on {shape.name}: {type(error).__name__}: {error}")
            continue
        for kind, call in calls.items():
            variants[(name, kind)] = call
            warm_seconds[(name, kind)] = warm[kind]
        info[name] = {
            "params": params,
            "training_parameter_count": op.training_parameter_count(),
            "collapsed_parameter_count": sum(p.numel() for p in collapsed.parameters()),
            "collapsed_kernel": list(collapsed.kernel_size),
        }
    for key in [(BASELINE, "train"), (BASELINE, "eval")]:
        warm_seconds[key] = _timed_call(variants[key])
    return variants, warm_seconds, info, notes, sum(p.numel() for p in conv.parameters())


def measurement_clock(device: torch.device) -> dict[str, Any]:
    """``Timer`` keyword arguments: process CPU time for single-threaded CPU runs (time spent descheduled by
    other processes is not counted); otherwise ``torch.utils.benchmark``'s default wall clock, which
    synchronizes CUDA."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return {"timer": time.process_time}
    return {}


def _timed_call(call: Callable[[], None]) -> float:
    """Run ``call`` once (the warm-up) and return its seconds, which size the timed blocks."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(
    variants: dict[tuple[str, str], Callable[[], None]],
    first: dict[tuple[str, str], float],
    rounds: int,
    min_run_time: float,
    budget: float,
    device: torch.device,
) -> dict[str, Any]:
    """Per variant: its median seconds per call, and the median over rounds of its ratio to the baseline.

    Every round visits the operator variants in a reshuffled (seeded) order and times each one right beside the
    baseline of its kind (train or eval), baseline first in a variant's even rounds and second in its odd ones:
    both sides of a ratio see the same load, and order effects cancel. Each sample is one
    ``torch.utils.benchmark`` ``timeit`` block of enough calls to last ``min_run_time``. A slow variant gets
    only as many rounds (at least 3) as fit in ``budget`` seconds.
    """
    threads, clock = torch.get_num_threads(), measurement_clock(device)
    timers = {
        key: benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=threads, **clock)
        for key, call in variants.items()
    }
    numbers = {key: max(1, math.ceil(min_run_time / seconds)) for key, seconds in first.items()}
    baseline_of = {
        key: (BASELINE, "train" if key[1].startswith("train") else "eval")
        for key in variants
        if key[0] != BASELINE
    }
    quota = {}
    for key, base in baseline_of.items():
        pair_seconds = first[key] * numbers[key] + first[base] * numbers[base]
        quota[key] = max(3, min(rounds, int(budget // pair_seconds)))
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    ratios: dict[tuple[str, str], list[float]] = {key: [] for key in baseline_of}
    order = list(baseline_of)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for key in order:
            if len(ratios[key]) >= quota[key]:
                continue
            base = baseline_of[key]
            pair = (base, key) if len(ratios[key]) % 2 == 0 else (key, base)
            sample = {side: timers[side].timeit(numbers[side]).mean for side in pair}
            for side, seconds in sample.items():
                samples[side].append(seconds)
            ratios[key].append(sample[key] / sample[base])
    return {
        "seconds": {key: statistics.median(values) for key, values in samples.items()},
        "ratios": {key: statistics.median(values) for key, values in ratios.items()},
        "ratio_samples": ratios,
    }


def run_shape(
    shape: Shape, names: list[str], args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    overrides = parse_params(args.params)
    variants, warm_seconds, info, notes, baseline_params = build_variants(shape, names, overrides, device)
    for note in notes:
        print(note, flush=True)
    measured = measure(variants, warm_seconds, args.rounds, args.min_run_time, args.budget, device)
    seconds, ratios = measured["seconds"], measured["ratios"]
    rows = []
    for name, details in info.items():
        row = {"operator": name, **details}
        row.update({f"{kind}_ratio": ratios[(name, kind)] for kind in KINDS})
        row["times_ms"] = {kind: 1e3 * seconds[(name, kind)] for kind in KINDS}
        row["ratio_range"] = {
            kind: [min(measured["ratio_samples"][(name, kind)]), max(measured["ratio_samples"][(name, kind)])]
            for kind in KINDS
        }
        rows.append(row)
    return {
        "shape": shape.name,
        "conv": shape.conv,
        "input": list(shape.input),
        "baseline": {
            "train_ms": 1e3 * seconds[(BASELINE, "train")],
            "eval_ms": 1e3 * seconds[(BASELINE, "eval")],
            "parameter_count": baseline_params,
        },
        "operators": rows,
        "skipped": notes,
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | operator | train eager | train collapsed | eval eager | eval collapsed | train params / deployed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        base = result["baseline"]
        lines.append(
            f"| {result['shape']}, batch {result['input'][0]} | nn.Conv2d | {base['train_ms']:.2f} ms | | {base['eval_ms']:.2f} ms | | "
            f"{base['parameter_count']} |"
        )
        for row in result["operators"]:
            lines.append(
                f"| | {row['operator']} | {row['train_ratio']:.2f}x | {row['train_collapsed_ratio']:.2f}x | "
                f"{row['eval_ratio']:.2f}x | {row['eval_collapsed_ratio']:.2f}x | "
                f"{row['training_parameter_count']} / {row['collapsed_parameter_count']} |"
            )
    return "\n".join(lines)


def weighted_check(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The weighted conv's training-step ratio per shape against the 1.1x limit."""
    checks = []
    for result in results:
        for row in result["operators"]:
            if row["operator"] == "weighted":
                ratio = row["train_ratio"]
                checks.append(
                    {
                        "shape": result["shape"],
                        "train_ratio": ratio,
                        "train_ratio_range": row["ratio_range"]["train"],
                        "within_limit": ratio <= WEIGHTED_LIMIT,
                    }
                )
    return checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (cuda falls back to an error when absent)"
    )
    parser.add_argument(
        "--operators", nargs="*", default=None, help="operator names (default: every registered one)"
    )
    parser.add_argument(
        "--params", nargs="*", default=[], help="OPERATOR:NAME=VALUE overrides of default params"
    )
    parser.add_argument("--rounds", type=int, default=9, help="rounds; each ratio is the median")
    parser.add_argument("--min-run-time", type=float, default=0.02, help="seconds per timed block")
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of rounds per slow variant")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 8)")
    parser.add_argument("--quick", action="store_true", help="batch 2, 5 rounds, 3 s budget (a smoke run)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 on CPU, else torch's)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default results/operators_<device>.json)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.budget = 5, 2.0
        args.batch = args.batch or 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available on this machine", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    threads = args.threads or (1 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    names = args.operators or operators.names()
    shapes = [
        replace(shape, input=(args.batch, *shape.input[1:])) if args.batch else shape for shape in SHAPES
    ]
    load_before = os.getloadavg()
    results = [run_shape(shape, names, args, device) for shape in shapes]
    load_after = os.getloadavg()
    table = markdown_table(results)
    print(table)
    checks = weighted_check(results)
    for check in checks:
        status = "ok" if check["within_limit"] else "OVER"
        low, high = check["train_ratio_range"]
        print(
            f"weighted train step on {check['shape']}: {check['train_ratio']:.3f}x "
            f"(rounds {low:.2f}..{high:.2f}; limit {WEIGHTED_LIMIT}x) {status}"
        )
    out = args.out or RESULTS / f"operators_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join(
            ["python benchmarks/bench_operators.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "device": args.device if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "clock": "process CPU time" if measurement_clock(device) else "wall clock",
        "rounds": args.rounds,
        "min_run_time_s": args.min_run_time,
        "budget_s": args.budget,
    }
    out.write_text(
        json.dumps({"meta": meta, "results": results, "weighted_check": checks}, indent=2, default=str) + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
