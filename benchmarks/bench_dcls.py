"""Speed of the ``dcls`` operator against a dense conv of the same window, measured in one run.

Two settings from the dcls issue, and one for information:

- ``depthwise_train``: a training step (forward + backward, input gradient included) of a 96-channel depthwise
  DCLS with 34 taps in a 17x17 window, batch 8, 56x56, against a dense depthwise 17x17 conv. Limit: 1.2x.
- ``dense_forward``: the forward (autograd on, as in training) of a dense 64->64 DCLS with 9 taps in a 7x7
  window at 32x32, against a 7x7 conv. Limits: 1.6x at batch 1 (the hardest: the conv is smallest against the
  kernel construction) and 1.5x at batch 8.
- ``dense_train_b8``: a training step of that dense layer at batch 8 (no limit in the issue).

With autograd on, the operator builds its kernel on every call (nothing is kept while a gradient may flow), so
a forward with unchanged parameters costs what one after an optimizer step does. Each setting runs the operator
with both interpolations and, for information, the reference ``dcls`` package's ``Dcls2d`` (gauss and its
bilinear ``v1``) when it is installed (``--no-package`` leaves it out). ``--compile`` adds every module compiled
with ``torch.compile`` (``*_compiled``, against the compiled dense conv; on the CPU that needs a C++ compiler).
``kernel_ms`` is the time of the operator's kernel construction alone (autograd on); ``minor_faults_per_call``
the pages the process faulted in per call. Each module is measured once per round (the median of a
``torch.utils.benchmark`` ``blocked_autorange``), rounds interleaved; its time is its fastest round, the estimate
least disturbed by other processes on a shared machine (the JSON keeps every round and the load).

    python benchmarks/bench_dcls.py                 # CPU -> benchmarks/results/dcls_cpu.json
    python benchmarks/bench_dcls.py --device cuda --compile   # -> benchmarks/results/dcls_cuda.json
    python benchmarks/bench_dcls.py --settings dense_train_b8 --output /tmp/x.json   # one setting
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from operators.dcls import DclsConv2d

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Setting:
    name: str
    channels_in: int
    channels_out: int
    groups: int
    kernel_count: int
    window: int
    batch: int
    size: int
    train: bool  # forward + backward, else forward only
    limit: float | None  # the ceiling for operator time / dense conv time (None: for information)


SETTINGS = (
    Setting("depthwise_train", 96, 96, 96, 34, 17, 8, 56, True, 1.2),
    Setting("dense_forward_b1", 64, 64, 1, 9, 7, 1, 32, False, 1.6),
    Setting("dense_forward_b8", 64, 64, 1, 9, 7, 8, 32, False, 1.5),
    Setting("dense_train_b8", 64, 64, 1, 9, 7, 8, 32, True, None),
)


def _package_module(setting: Setting, version: str) -> nn.Module | None:
    """The reference package's Dcls2d, or None when the package is not installed."""
    logging.disable(
        logging.WARNING
    )  # the package logs on import and construction that CUDA paths are missing
    try:
        from DCLS.construct.modules import Dcls2d

        return Dcls2d(
            setting.channels_in,
            setting.channels_out,
            kernel_count=setting.kernel_count,
            dilated_kernel_size=setting.window,
            padding=setting.window // 2,
            groups=setting.groups,
            version=version,
        )
    except ImportError:
        return None
    finally:
        logging.disable(logging.NOTSET)


def modules(setting: Setting, package: bool = True) -> dict[str, nn.Module]:
    s = setting
    common = dict(kernel_size=s.window, padding=s.window // 2, groups=s.groups)
    built: dict[str, nn.Module] = {"dense": nn.Conv2d(s.channels_in, s.channels_out, **common)}
    for interpolation in ("gauss", "bilinear"):
        built[f"dcls_{interpolation}"] = DclsConv2d(
            s.channels_in,
            s.channels_out,
            **common,
            kernel_count=s.kernel_count,
            dilated_kernel_size=s.window,
            interpolation=interpolation,
        )
    for label, version in (("package_gauss", "gauss"), ("package_bilinear", "v1")):
        module = _package_module(setting, version) if package else None
        if module is not None:
            built[label] = module
    return built


def _step(module: nn.Module, x: torch.Tensor, train: bool) -> Callable[[], None]:
    def forward() -> None:
        module(x)

    def train_step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return train_step if train else forward


def median_ms(fn: Callable[[], None], min_run_time: float) -> float:
    # torch.utils.benchmark times on one thread unless told otherwise: run on the threads torch is set to
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def minor_faults_per_call(fn: Callable[[], None], calls: int = 5) -> float | None:
    """Pages faulted in per call (the process's minor faults; None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def elementwise_op_ms(device: torch.device, min_run_time: float) -> float:
    """One elementwise multiply over as many elements as the dense layer's profiles (2 x 4096 filters x 9 taps x 7
    cells): what each of the construction's steps pays to be dispatched and, on the CPU, for its parallel region
    (on a loaded machine a region waits until every thread it wakes gets a core)."""
    values = torch.rand(2, 4096, 9, 7, device=device)
    return median_ms(lambda: torch.mul(values, values), min_run_time)


def run_setting(
    setting: Setting,
    device: torch.device,
    min_run_time: float,
    rounds: int,
    package: bool = True,
    compile: bool = False,
) -> dict:
    """Times per module, interleaved over ``rounds``; each module's time is its fastest round.

    On a machine shared with other jobs a measurement is the true time plus whatever load it met, so the
    least-disturbed round is the best estimate; every round's time is kept in the JSON. Compiled modules are
    compared with the compiled dense conv.
    """
    torch.manual_seed(0)
    x = torch.randn(setting.batch, setting.channels_in, setting.size, setting.size, device=device)
    x.requires_grad_(setting.train)
    built = {label: module.to(device) for label, module in modules(setting, package).items()}
    if compile:
        for label in ("dense", "dcls_gauss", "dcls_bilinear"):
            built[f"{label}_compiled"] = torch.compile(built[label])
    steps = {label: _step(module, x, setting.train) for label, module in built.items()}
    kernels = {
        label[5:]: module.dense_kernel
        for label, module in built.items()
        if label.startswith("dcls_") and not label.endswith("_compiled")
    }
    for fn in (*steps.values(), *kernels.values()):
        fn()  # warm up (allocations, algorithm choice)
    samples: dict[str, list[float]] = {label: [] for label in steps}
    kernel_samples: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(rounds):
        for label, fn in steps.items():
            samples[label].append(median_ms(fn, min_run_time))
        for name, fn in kernels.items():
            kernel_samples[name].append(median_ms(fn, min_run_time))
    faults = {label: minor_faults_per_call(fn) for label, fn in steps.items()} if device.type == "cpu" else {}
    times = {label: min(values) for label, values in samples.items()}
    baseline = {label: "dense_compiled" if label.endswith("_compiled") else "dense" for label in times}
    ratios = {
        label: time / times[baseline[label]] for label, time in times.items() if label != baseline[label]
    }
    return {
        **setting.__dict__,
        "times_ms": times,
        "kernel_ms": {name: min(values) for name, values in kernel_samples.items()},
        "ratio_to_dense": ratios,
        "within_limit": {
            label: ratios[label] <= setting.limit
            for label in ratios
            if label.startswith("dcls_") and setting.limit is not None
        },
        "minor_faults_per_call": faults,
        "rounds_ms": samples,
    }


def table(results: list[dict]) -> str:
    labels = [label for label in results[0]["times_ms"] if label != "dense"]
    lines = [
        "| setting | dense ms | " + " | ".join(f"{label} (x dense)" for label in labels) + " | limit |",
        "| --- | --- | " + " | ".join("---" for _ in labels) + " | --- |",
    ]
    for result in results:
        cells = []
        for label in labels:
            time, ratio = result["times_ms"].get(label), result["ratio_to_dense"].get(label)
            cells.append(
                "n/a" if time is None else f"{time:.2f} ms" + ("" if ratio is None else f" ({ratio:.2f}x)")
            )
        row = f"| {result['name']} | {result['times_ms']['dense']:.2f} | " + " | ".join(cells)
        limit = "-" if result["limit"] is None else f"{result['limit']}x"
        lines.append(row + f" | {limit} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per setting")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=[setting.name for setting in SETTINGS],
        default=None,
        help="run only these settings (default: all)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads on the CPU (default: torch's, one per core)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON path (default results/dcls_<device>.json)"
    )
    parser.add_argument(
        "--no-package", action="store_true", help="leave the reference dcls package's modules out"
    )
    parser.add_argument("--compile", action="store_true", help="also time the modules under torch.compile")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    chosen = [setting for setting in SETTINGS if args.settings is None or setting.name in args.settings]
    results = [
        run_setting(setting, device, args.min_run_time, args.rounds, not args.no_package, args.compile)
        for setting in chosen
    ]
    report = {
        "benchmark": "dcls",
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "package": not args.no_package,
        "compile": args.compile,
        "elementwise_op_ms": elementwise_op_ms(device, args.min_run_time),
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "results": results,
    }
    output = args.output or RESULTS / f"dcls_{device.type}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"kernel construction ms: { {r['name']: r['kernel_ms'] for r in results} }")
    print(f"minor page faults per call: { {r['name']: r['minor_faults_per_call'] for r in results} }")
    print(f"one elementwise op over the dense layer's profiles: {report['elementwise_op_ms']:.3f} ms")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
