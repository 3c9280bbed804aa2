"""Export speed: an exported model costs what a plain-conv model of the same shape costs.

For every registered operator (``operators.names()``, its first example parameters), a small built-in model
(``--model``, default ``compact:ConvOps-cifar``) has every eligible conv rewritten with that operator and is
exported with ``nas.export`` (collapse, BatchNorm folded, TorchScript, saved and loaded back). Baselines, built
and timed in the same run:

- plain: the same architecture with each operator replaced by a fresh ``nn.Conv2d`` of the collapsed geometry
  (a plain-conv model of the same shape), exported the same way (BatchNorm folded, scripted, saved, loaded);
- plain control: a second plain-conv equivalent (other random weights), exported the same way; plain control /
  plain measures the run's noise (the two are the same computation);
- uncollapsed: the rewritten model in eval mode, eager, operators computing their kernels on every call;
- collapsed: the same with every operator collapsed to its plain conv (eager, BatchNorm kept).

Ratios: exported / plain (target <= 1.05 for every operator) and collapsed / uncollapsed (target <= 1.0).
The noise floor of a run is the largest distance from 1 of the control ratio (plain control / plain) over the
operators; collapsed / uncollapsed passes when it is at most 1 + that floor (the ``conv`` operator has the same
computation on both sides of it).
Each ratio is the median over ``--rounds`` rounds of two timings taken side by side (``torch.utils.benchmark``
blocks of at least ``--min-run-time`` seconds, eval mode, inference mode), so both see the same load from other
processes. On CPU one thread is timed in process CPU time, which leaves out time spent descheduled.

    python benchmarks/bench_export.py                 # writes benchmarks/results/export_cpu.json
    python benchmarks/bench_export.py --quick         # fewer, shorter rounds
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


def timer_for(model: Any, x: torch.Tensor, min_run_time: float) -> float:
    """Median seconds of ``model(x)`` in a block of at least ``min_run_time`` process-CPU seconds."""
    import torch.utils.benchmark as benchmark

    def call() -> None:
        model(x)

    timer = benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=1, timer=time.process_time)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def side_by_side(
    models: dict[str, Any], x: torch.Tensor, rounds: int, min_run_time: float
) -> dict[str, list[float]]:
    """Per model, ``rounds`` timings taken in turns (the order alternates every round)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(5):  # warm-up: TorchScript's profiling executor optimizes after a few calls
                model(x)
        names = list(models)
        for index in range(rounds):
            for name in names if index % 2 == 0 else reversed(names):
                times[name].append(timer_for(models[name], x, min_run_time))
    return times


def plain_equivalent(module: nn.Module) -> nn.Module:
    """``module`` with every operator replaced by a fresh ``nn.Conv2d`` of its collapsed geometry."""
    import copy

    from operators import ConvOperator

    plain = copy.deepcopy(module)
    for path, submodule in list(plain.named_modules()):
        if isinstance(submodule, ConvOperator):
            parent_path, _, child = path.rpartition(".")
            parent = plain.get_submodule(parent_path) if parent_path else plain
            setattr(parent, child, nn.Conv2d(**submodule.collapsed_spec().conv_kwargs()))
    return plain


def exported_file(module: nn.Module, input_shape: tuple[int, ...], folder: Path, name: str) -> Any:
    from nas.export import ExportOptions, export_module, load_torchscript

    out = folder / f"{name}.pt"
    export_module(
        module,
        input_shape,
        {"source": "benchmark"},
        ExportOptions(out=out, pt2=False, verify=False, latency=None),
    )
    return load_torchscript(out)[0].eval()


def ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def main() -> None:
    import operators
    from nas.graph import capture, rewrite_with_operator
    from nas.graph.collapse import collapse_operators
    from nas.models import build_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="compact:ConvOps-cifar")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--min-run-time", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="7 rounds of 0.02 s")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "export_cpu.json"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.min_run_time = 7, 0.02
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # CUDA_HOME notice on CPU machines
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in operators.names():
            params = dict(operators.get(name).example_params[0])
            torch.manual_seed(0)
            built = build_model(args.model)
            shape = tuple(built.input_shape)
            module = capture(built.module, shape)
            rewritten = rewrite_with_operator(module, name, params)
            module.eval()
            models = {
                "exported": exported_file(module, shape, Path(folder), name),
                "plain": exported_file(plain_equivalent(module), shape, Path(folder), f"{name}-plain"),
                "plain_control": exported_file(
                    plain_equivalent(module), shape, Path(folder), f"{name}-control"
                ),
                "uncollapsed": module,
                "collapsed": collapse_operators(module).eval(),
            }
            x = torch.randn(args.batch_size, *shape)
            times = side_by_side(models, x, args.rounds, args.min_run_time)
            row = dict(
                operator=name,
                params=params,
                rewritten=len(rewritten.rewritten),
                ms={key: round(statistics.median(values) * 1e3, 4) for key, values in times.items()},
                exported_over_plain=round(ratio(times, "exported", "plain"), 4),
                control_over_plain=round(ratio(times, "plain_control", "plain"), 4),
                collapsed_over_uncollapsed=round(ratio(times, "collapsed", "uncollapsed"), 4),
                exported_over_uncollapsed=round(ratio(times, "exported", "uncollapsed"), 4),
            )
            rows.append(row)
            ms = row["ms"]
            print(
                f"{name:13s} rewrote {row['rewritten']:2d}  exported {ms['exported']:8.3f} ms  plain {ms['plain']:8.3f} ms  "
                f"ratio {row['exported_over_plain']:.3f} (control {row['control_over_plain']:.3f})   uncollapsed {ms['uncollapsed']:8.3f} ms  collapsed "
                f"{ms['collapsed']:8.3f} ms  ratio {row['collapsed_over_uncollapsed']:.3f}",
                flush=True,
            )
    noise = max(abs(r["control_over_plain"] - 1) for r in rows)
    for row in rows:
        row["within_limits"] = row["exported_over_plain"] <= 1.05 and (
            row["collapsed_over_uncollapsed"] <= 1.0 + noise
        )
    result = dict(
        benchmark="export",
        model=args.model,
        batch_size=args.batch_size,
        device="cpu",
        threads=1,
        clock="process CPU time",
        rounds=args.rounds,
        min_run_time=args.min_run_time,
        torch=torch.__version__,
        machine=platform.machine(),
        processor=platform.processor(),
        load_average_1min={"before": load_before, "after": os.getloadavg()[0]},
        targets={"exported_over_plain": "<= 1.05", "collapsed_over_uncollapsed": "<= 1.0 + noise floor"},
        noise_floor=round(noise, 4),
        all_within_limits=all(r["within_limits"] for r in rows),
        max_exported_over_plain=max(r["exported_over_plain"] for r in rows),
        max_collapsed_over_uncollapsed=max(r["collapsed_over_uncollapsed"] for r in rows),
        rows=rows,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"max exported/plain {result['max_exported_over_plain']:.3f}   max collapsed/uncollapsed "
        f"{result['max_collapsed_over_uncollapsed']:.3f}   noise floor (control) {noise:.3f}   all within limits: "
        f"{result['all_within_limits']}   wrote {args.out}"
    )


if __name__ == "__main__":
    main()
