"""Where the time of one DCLS kernel construction goes: each step of ``operators.dcls_kernel.Workspace`` timed on
its own, for the dense 64->64 layer of ``bench_dcls.py`` (9 taps in a 7x7 window) and for a one-filter layer
(whose time is the Python and dispatch cost of the steps, the arithmetic being nil).

Each step's figure is the fastest of many constructions (``--calls``), so they add up to less than a typical
construction on a busy machine; the ``total`` row is timed around the same construction.

    python benchmarks/dcls_steps.py                 # torch's threads
    python benchmarks/dcls_steps.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from operators.dcls import DclsConv2d
from operators.dcls_kernel import Workspace, _scratch_elements
from operators.scratch import SCRATCH

STEPS = (
    "borrow",
    "workspace",
    "read_taps",
    "compute_profiles",
    "compute_scale",
    "contract",
    "conv_layout",
    "total",
)


def step_times(op: DclsConv2d, calls: int) -> dict[str, float]:
    """Fastest time of each step over ``calls`` constructions, in microseconds."""
    shape, spreads = op._shape, op.spreads
    fastest = dict.fromkeys(STEPS, float("inf"))

    def mark(step: str, since: float) -> float:
        now = time.perf_counter()
        fastest[step] = min(fastest[step], now - since)
        return now

    with torch.no_grad():
        for _ in range(calls):
            start = now = time.perf_counter()
            with SCRATCH.borrow(op.weight, _scratch_elements(shape)) as memory:
                now = mark("borrow", now)
                work = Workspace.lend(shape, spreads is not None, op.grid, memory)
                now = mark("workspace", now)
                work.read_taps(op.positions, spreads)
                now = mark("read_taps", now)
                work.compute_profiles()
                now = mark("compute_profiles", now)
                work.compute_scale(op.weight)
                now = mark("compute_scale", now)
                work.contract()
                now = mark("contract", now)
                layout = work.kernel_conv_layout
                op.weight.new_empty(layout.shape).copy_(layout)
                mark("conv_layout", now)
            mark("total", start)
    return {step: seconds * 1e6 for step, seconds in fastest.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--calls", type=int, default=500, help="constructions per layer")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = {"64->64": 64, "one filter": 1}
    print(f"threads {torch.get_num_threads()}; fastest of {args.calls} constructions, microseconds")
    print(
        "| step | "
        + " | ".join(f"{name} {interp}" for name in layers for interp in ("gauss", "bilinear"))
        + " |"
    )
    print("| --- |" + " ---: |" * (2 * len(layers)))
    columns = []
    for channels in layers.values():
        for interpolation in ("gauss", "bilinear"):
            op = DclsConv2d(
                channels,
                channels,
                7,
                padding=3,
                kernel_count=9,
                dilated_kernel_size=7,
                interpolation=interpolation,
            )
            columns.append(step_times(op, args.calls))
    for step in STEPS:
        print(f"| {step} | " + " | ".join(f"{column[step]:.0f}" for column in columns) + " |")


if __name__ == "__main__":
    main()
