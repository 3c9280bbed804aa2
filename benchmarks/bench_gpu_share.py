"""Trials per hour on one CUDA GPU with 1, 2 and 4 trials sharing it, on the default space (convops.yaml).

The local backend runs ``search.parallel`` worker processes on one study storage, each training its trial on the
same GPU: what Ray's fractional GPUs (``resources.gpu`` = 1, 0.5, 0.25) schedule on a cluster, without Ray (Ray's
own overhead against the local backend is measured on the CPU by ``bench_ray.py``). Every run does the same number
of trials; the first 8 of convops.yaml are the sampler's seeded startup trials, so with ``--trials`` <= 8 the runs
train the same candidates in a different order.

    python benchmarks/bench_gpu_share.py [--trials 8] [--epochs 8] [--out benchmarks/results/gpu_share_cuda.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import optuna
import torch

from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.space import load_space


def timed_run(parallel: int, trials: int, epochs: int, folder: Path, device: str) -> dict:
    space = load_space(
        "convops.yaml",
        [
            f"search.trials={trials}",
            f"train.epochs={epochs}",
            f"train.device={device}",
            f"search.parallel={parallel}",
        ],
    )
    progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False, quiet=True)
    started = time.perf_counter()
    study = run_local(space, folder, progress)
    wall = time.perf_counter() - started
    done = study.get_trials()
    return {
        "parallel": parallel,
        "trials": len(done),
        "states": sorted({t.state.name for t in done}),
        "wall_s": round(wall, 1),
        "trials_per_hour": round(3600 * len(done) / wall, 1),
        "best_accuracy": max((t.values[0] for t in done if t.values), default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--shares", default="1,2,4", help="concurrent trials on the GPU, comma-separated")
    parser.add_argument("--device", default="cuda", help="cuda (cpu only for a smoke run of this script)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_share_cuda.json"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_gpu_share.py needs a CUDA GPU")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_share_") as tmp:
        for share in (int(s) for s in args.shares.split(",")):
            runs.append(timed_run(share, args.trials, args.epochs, Path(tmp) / f"p{share}", args.device))
            print(json.dumps(runs[-1]), flush=True)
    base = runs[0]["trials_per_hour"]
    result = {
        "benchmark": "trials sharing one GPU (local backend, worker processes)",
        "space": "convops.yaml",
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "runs": runs,
        "speedup_vs_1": {str(r["parallel"]): round(r["trials_per_hour"] / base, 3) for r in runs},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
