"""Page faults of DCLS in a fresh process: what it returns on recycled storage against a new tensor per call.

The dense 64->64 layer of ``bench_dcls.py`` (9 taps in 7x7, 32x32, batch 1) runs its forward (autograd on, as in
training; ``--mode forward``) or a training step (forward and backward; ``--mode train``) in a new Python process
per variant, so that each starts from the same ``malloc`` state:

- ``recycled``: as the operator is: the kernel, and the parameters' gradients, built into storage of an earlier
  call's (``operators/recycled.py``);
- ``fresh``: the same with the pool given no room, so every one is a new tensor, as before the pool.

Each process also times a 7x7 conv doing the same. Per process: minor page faults per call (``getrusage``), the
operator's and the conv's time in ms (the median of ``--blocks`` blocks), their ratio. ``--repeats`` processes per
variant, alternating; whether a process faults depends on ``malloc``'s state, which differs from process to
process, so the table counts the processes that did.

    python benchmarks/dcls_page_faults.py                 # -> results/dcls_page_faults_cpu.json
    python benchmarks/dcls_page_faults.py --mode train    # -> results/dcls_page_faults_train_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("recycled", "fresh")


def measure(variant: str, interpolation: str, mode: str, blocks: int, calls: int) -> dict:
    """One variant in this process."""
    from operators import recycled
    from operators.dcls import DclsConv2d

    if variant == "fresh":
        recycled.RECYCLED.limit_bytes = 0
    torch.manual_seed(0)
    op = DclsConv2d(64, 64, 7, padding=3, kernel_count=9, dilated_kernel_size=7, interpolation=interpolation)
    conv = torch.nn.Conv2d(64, 64, 7, padding=3)
    x = torch.randn(1, 64, 32, 32)

    def call(module: torch.nn.Module) -> None:
        if mode == "forward":
            module(x)
            return
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    def block(fn) -> tuple[float, float]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        seconds = (time.perf_counter() - start) / calls
        return seconds * 1e3, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / calls

    block(lambda: call(op))  # warm up
    block(lambda: call(conv))
    op_ms, conv_ms, faults = [], [], []
    for _ in range(blocks):
        ms, per_call = block(lambda: call(op))
        op_ms.append(ms)
        faults.append(per_call)
        conv_ms.append(block(lambda: call(conv))[0])
    return {
        "op_ms": statistics.median(op_ms),
        "conv_ms": statistics.median(conv_ms),
        "op_x_conv": statistics.median(op_ms) / statistics.median(conv_ms),
        "faults_per_call": statistics.median(faults),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant and interpolation")
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="calls (forwards or training steps) per block")
    parser.add_argument("--mode", choices=("forward", "train"), default="forward")
    parser.add_argument(
        "--output", type=Path, default=None, help="default results/dcls_page_faults[_train]_cpu.json"
    )
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "INTERPOLATION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child, args.mode, args.blocks, args.calls)))
        return
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for interpolation in ("gauss", "bilinear"):
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--child", variant, interpolation]
                command += ["--mode", args.mode, "--blocks", str(args.blocks), "--calls", str(args.calls)]
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                runs.setdefault(f"{variant}_{interpolation}", []).append(
                    json.loads(result.stdout.splitlines()[-1])
                )
    summary = {
        label: {
            **{key: statistics.median(run[key] for run in results) for key in results[0]},
            "processes_with_faults": sum(run["faults_per_call"] >= 1 for run in results),
            "processes": len(results),
        }
        for label, results in runs.items()
    }
    report = {
        "benchmark": "dcls_page_faults",
        "device_name": platform.processor(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mode": args.mode,
        "repeats": args.repeats,
        "summary": summary,
        "runs": runs,
    }
    suffix = "" if args.mode == "forward" else f"_{args.mode}"
    output = args.output or RESULTS / f"dcls_page_faults{suffix}_cpu.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| variant | processes with faults | faults per call, each | {args.mode} / conv, each (median) |")
    print("| --- | --- | --- | --- |")
    for label, row in summary.items():
        faults = ", ".join(f"{run['faults_per_call']:.0f}" for run in runs[label])
        ratios = ", ".join(f"{run['op_x_conv']:.2f}" for run in runs[label])
        print(
            f"| {label} | {row['processes_with_faults']} of {row['processes']} | {faults} "
            f"| {ratios} ({row['op_x_conv']:.2f}x) |"
        )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
