"""Cost-model speed: capture + shape propagation + count against fvcore's FlopCountAnalysis, same model, same run.

Target (issue 2): ours <= 1/4 of fvcore's time on ResNet-50 at 224 px.

    python benchmarks/bench_cost.py [--models resnet50,efficientnet_b0] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import torch


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import torchvision
    from fvcore.nn import FlopCountAnalysis

    from nas.cost import count
    from nas.graph import capture

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet50,efficientnet_b0,regnet_y_16gf")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cost_cpu.json"))
    args = parser.parse_args()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    torch.set_num_threads(
        1
    )  # one thread: fvcore runs the model for real, and 2 threads thrash on a shared machine

    rows = []
    for name in args.models.split(","):
        model = getattr(torchvision.models, name)().eval()
        x = torch.randn(1, 3, 224, 224)

        def ours(model=model):
            return count(capture(model, (3, 224, 224))).macs

        def fvcore(model=model, x=x):
            with torch.no_grad():
                analysis = (
                    FlopCountAnalysis(model, x)
                    .unsupported_ops_warnings(False)
                    .uncalled_modules_warnings(False)
                )
                return analysis.total()

        ours_s, fvcore_s = _median_seconds(ours, args.repeats), _median_seconds(fvcore, args.repeats)
        rows.append(
            dict(
                model=name,
                ours_ms=round(ours_s * 1e3, 1),
                fvcore_ms=round(fvcore_s * 1e3, 1),
                ratio=round(ours_s / fvcore_s, 3),
            )
        )
        print(
            f"{name:18s} ours {ours_s * 1e3:7.1f} ms   fvcore {fvcore_s * 1e3:7.1f} ms   ratio {ours_s / fvcore_s:.3f}"
        )

    result = dict(
        benchmark="cost",
        target="ours/fvcore <= 0.25 on resnet50",
        torch=torch.__version__,
        machine=platform.machine(),
        threads=torch.get_num_threads(),
        rows=rows,
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
