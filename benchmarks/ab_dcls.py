"""The ``dcls`` operator of this checkout against the one of another checkout, interleaved in one process.

Timings of two runs of ``bench_dcls.py`` minutes apart differ by more than a change to the kernel construction
saves on a shared machine; run side by side, round after round, both meet the same load. For each interpolation,
the kernel construction alone, the forward (autograd on, as in training) and the training step (forward and
backward, the input's gradient included) of the dense 64->64 layer of ``bench_dcls.py`` (9 taps in 7x7, 32x32,
batch 1 unless ``--batch``), and a 7x7 conv for the ratios; both operators hold the same parameters, and their
kernels and gradients are checked equal first. Each entry: the median over rounds of the mean over a block of
calls.

    git worktree add /tmp/before <commit>
    python benchmarks/ab_dcls.py --before /tmp/before            # -> results/dcls_ab_cpu.json
    python benchmarks/ab_dcls.py --before /tmp/before --threads 1
    python benchmarks/ab_dcls.py --before /tmp/before --batch 8 --output /tmp/ab_b8.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
LAYER = dict(kernel_size=7, padding=3, kernel_count=9, dilated_kernel_size=7)


def load_operators(checkout: Path, name: str):
    """The ``operators`` package of ``checkout`` imported as ``name`` (beside this checkout's own)."""
    package = checkout / "operators"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"{package}: no operators package there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.dcls")


def commit_of(checkout: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def block_mean(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def train_step(module: nn.Module, x: torch.Tensor, cotangent: torch.Tensor) -> None:
    """Forward and backward, gradients set to None first as ``zero_grad`` does."""
    module.zero_grad()
    x.grad = None
    module(x).backward(cotangent)


def gradients(module: nn.Module, x: torch.Tensor, cotangent: torch.Tensor) -> list[torch.Tensor]:
    train_step(module, x, cotangent)
    return [x.grad.clone()] + [p.grad.clone() for p in module.parameters()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=1, help="input batch (default 1)")
    parser.add_argument(
        "--output", type=Path, default=None, help="default results/dcls_ab_cpu[_1thread].json"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    here = Path(__file__).resolve().parent.parent
    checkouts = {"before": args.before.resolve(), "after": here}
    modules = {"before": load_operators(checkouts["before"], "operators_before")}
    from operators import dcls as current

    modules["after"] = current
    torch.manual_seed(0)
    x = torch.randn(args.batch, 64, 32, 32, requires_grad=True)
    cotangent = torch.randn(args.batch, 64, 32, 32)
    ops: dict[str, nn.Module] = {}
    for interpolation in ("gauss", "bilinear"):
        after = modules["after"].DclsConv2d(64, 64, **LAYER, interpolation=interpolation)
        before = modules["before"].DclsConv2d(64, 64, **LAYER, interpolation=interpolation)
        before.load_state_dict(after.state_dict())
        torch.testing.assert_close(before.dense_kernel(), after.dense_kernel())
        for got, want in zip(gradients(after, x, cotangent), gradients(before, x, cotangent)):
            torch.testing.assert_close(got, want)
        ops[f"before_{interpolation}"], ops[f"after_{interpolation}"] = before, after
    conv = nn.Conv2d(64, 64, 7, padding=3)
    kernel_s: dict[str, list[float]] = {label: [] for label in ops}
    forward_s: dict[str, list[float]] = {label: [] for label in ops}
    train_s: dict[str, list[float]] = {label: [] for label in ops}
    conv_s: list[float] = []
    conv_train_s: list[float] = []
    for _ in range(args.rounds):
        for label, op in ops.items():
            kernel_s[label].append(block_mean(op.dense_kernel, 30))
            forward_s[label].append(block_mean(lambda op=op: op(x), 10))
            train_s[label].append(block_mean(lambda op=op: train_step(op, x, cotangent), 5))
        conv_s.append(block_mean(lambda: conv(x), 10))
        conv_train_s.append(block_mean(lambda: train_step(conv, x, cotangent), 5))
    conv_ms = statistics.median(conv_s) * 1e3
    conv_train_ms = statistics.median(conv_train_s) * 1e3
    rows = {
        label: {
            "kernel_ms": statistics.median(kernel_s[label]) * 1e3,
            "forward_ms": statistics.median(forward_s[label]) * 1e3,
            "forward_x_conv": statistics.median(forward_s[label]) * 1e3 / conv_ms,
            "train_ms": statistics.median(train_s[label]) * 1e3,
            "train_x_conv": statistics.median(train_s[label]) * 1e3 / conv_train_ms,
        }
        for label in ops
    }
    report = {
        "benchmark": "dcls_ab",
        "before": commit_of(checkouts["before"]),
        "after": commit_of(here),
        "device_name": platform.processor(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "batch": args.batch,
        "conv_ms": conv_ms,
        "conv_train_ms": conv_train_ms,
        "results": rows,
        "rounds_s": {
            "kernel": kernel_s,
            "forward": forward_s,
            "train": train_s,
            "conv": conv_s,
            "conv_train": conv_train_s,
        },
    }
    suffix = "" if args.threads is None else f"_{args.threads}thread"
    output = args.output or RESULTS / f"dcls_ab_cpu{suffix}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"threads {torch.get_num_threads()}, batch {args.batch}, 7x7 conv: forward {conv_ms:.3f} ms, "
        f"training step {conv_train_ms:.3f} ms (medians of {args.rounds} rounds)"
    )
    for label, row in rows.items():
        print(
            f"{label:16s} kernel {row['kernel_ms']:.3f} ms, forward {row['forward_ms']:.3f} ms "
            f"= {row['forward_x_conv']:.2f}x, training step {row['train_ms']:.3f} ms = {row['train_x_conv']:.2f}x"
        )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
