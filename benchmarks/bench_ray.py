"""The Ray backend's throughput: trials per hour on the default space (convops.yaml) with 1 and 2 concurrent trials
on the CPU, against the local backend running the same trials in the same run; on a CUDA GPU, 1, 2 and 4 trials
sharing it (fractional GPUs: ``resources.gpu`` = 1, 0.5, 0.25).

The first ``--trials`` trials of a study are the sampler's seeded startup trials (convops.yaml: 8), so every run
trains the same candidates (checked: ``same_candidates_as_local_1``) and the runs differ only in where and how
many at once. The local backend runs them in this process (1 at a time) or in 2 worker processes (whose samplers
ask on their own, so its candidates may differ). Ray runs on one local
instance started once (its start-up time is reported apart: a command pays it once, not per trial).
Overhead = Ray wall time / local wall time - 1, for the same number at once and the same threads per trial.

    python benchmarks/bench_ray.py [--trials 4] [--epochs 8] [--out benchmarks/results/ray_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import ray
import torch

from nas.search.local import run_local
from nas.search.progress import SearchProgress
from nas.search.ray_backend import run_ray
from nas.space import load_space


def _train_seconds(trial) -> float:
    return trial.user_attrs.get("metrics", {}).get("train_seconds", 0.0)


def timed_search(backend, overrides: list[str], study_dir: Path) -> dict:
    space = load_space("convops.yaml", overrides)
    progress = SearchProgress(space.name, [o.metric for o in space.objectives], live=False, quiet=True)
    started = time.perf_counter()
    study = backend(space, study_dir, progress)
    wall = time.perf_counter() - started
    trials = study.get_trials()
    states = sorted({t.state.name for t in trials})
    durations = [t.duration.total_seconds() for t in trials if t.duration]
    train = [_train_seconds(t) for t in trials]
    # a trial's time outside training: Optuna's start (when the searcher hands it out) to its end, less training.
    # The first trial also waits for a worker to start (a process, its imports, the data), so it is shown apart.
    outside = {t.number: t.duration.total_seconds() - _train_seconds(t) for t in trials if t.duration}
    first = min(outside, default=None)
    return {
        "trials": len(trials),
        "states": states,
        "wall_s": round(wall, 1),
        "trials_per_hour": round(3600 * len(trials) / wall, 1),
        "mean_trial_s": round(statistics.mean(durations), 2),
        "mean_train_s": round(statistics.mean(train), 2),
        "first_trial_outside_training_s": round(outside[first], 2) if first is not None else None,
        "median_later_outside_training_s": round(
            statistics.median(v for n, v in outside.items() if n != first), 2
        )
        if len(outside) > 1
        else None,
        "candidates": [t.params for t in trials],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=4, help="trials per run (<= 8 keeps them identical)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial (convops.yaml: 8)")
    parser.add_argument("--out", default="benchmarks/results/ray_cpu.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cores = os.cpu_count() or 1
    base = [f"search.trials={args.trials}", f"train.epochs={args.epochs}", "train.device=cpu"]
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        root = Path(tmp)
        runs["local_1"] = timed_search(run_local, [*base, "search.parallel=1"], root / "local_1")
        runs["local_2"] = timed_search(run_local, [*base, "search.parallel=2"], root / "local_2")
        started = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - started
        try:
            runs["ray_1"] = timed_search(
                run_ray, [*base, "search.parallel=1", f"resources.cpu={cores}"], root / "ray_1"
            )
            runs["ray_2"] = timed_search(
                run_ray, [*base, "search.parallel=2", f"resources.cpu={cores / 2:g}"], root / "ray_2"
            )
            gpu = gpu_runs(base, root) if torch.cuda.is_available() else None
        finally:
            ray.shutdown()
    reference = sorted(map(str, runs["local_1"]["candidates"]))
    same = {name: sorted(map(str, r["candidates"])) == reference for name, r in runs.items()}
    for r in runs.values():
        r.pop("candidates")
    result = {
        "benchmark": "ray",
        "space": "convops.yaml",
        "trials": args.trials,
        "epochs": args.epochs,
        "same_candidates_as_local_1": same,
        "cores": cores,
        "torch": torch.__version__,
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "machine": platform.machine(),
        "ray_start_s": round(ray_start, 1),
        "cpu": runs,
        "ray_overhead_vs_local": round(runs["ray_1"]["wall_s"] / runs["local_1"]["wall_s"] - 1, 3),
        "ray_overhead_vs_local_2_concurrent": round(
            runs["ray_2"]["wall_s"] / runs["local_2"]["wall_s"] - 1, 3
        ),
        "speedup_2_vs_1_concurrent": round(
            runs["ray_2"]["trials_per_hour"] / runs["ray_1"]["trials_per_hour"], 3
        ),
        "gpu": gpu if gpu is not None else "not measured: no CUDA device on this machine",
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


def gpu_runs(base: list[str], root: Path) -> dict:
    """1, 2 and 4 trials sharing one GPU (Ray's fractional GPUs), 1 CPU each."""
    out = {"device": torch.cuda.get_device_name(0)}
    for share in (1, 2, 4):
        overrides = [
            *[o for o in base if o != "train.device=cpu"],
            "train.device=cuda",
            f"search.parallel={share}",
            f"resources.gpu={1 / share:g}",
            "resources.cpu=1",
        ]
        run = timed_search(run_ray, overrides, root / f"gpu_{share}")
        run.pop("candidates")
        out[f"ray_{share}_sharing"] = run
    return out


if __name__ == "__main__":
    main()
