"""Engine overhead per trial on the default space, against a bare PyTorch loop in the same run.

A short search on ``convops.yaml`` runs twice with the same seed (the first ``--trials`` <= 8 are the sampler's
seeded startup trials, so both passes train the same candidates). The first pass warms what any loop pays once per
process and new shape (CUDA context, lazily loaded kernels, cuDNN plans; a hand-written loop pays it too); its
trial times are reported as ``engine_cold_s``. From the second pass:

- fixed overhead: a trial's time minus its training and evaluation loop (``train_seconds``): sample, build,
  capture, scale, rewrite, count costs, check constraints, save weights, record; as a fraction of the trial.
- loop overhead: the engine's loop (``nas.train.train``) against a bare hand-written loop (same data tensors,
  optimizer, schedule, epochs, batch size, evaluation each epoch; bf16 autocast and channels_last on CUDA as the
  engine), each candidate rebuilt and trained by both in alternation for ``--rounds`` rounds, fastest of each.
- total overhead = (fixed + engine loop - bare loop) / (fixed + engine loop), summed over trials. Target (issue 5):
  at most 5%.

    python benchmarks/bench_trial.py [--trials 6] [--epochs 8] [--rounds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def bare_loop(
    model, train_x, train_y, val_x, val_y, epochs, batch_size, lr, weight_decay, label_smoothing, seed
):
    """The loop a user would write by hand: AdamW, per-step cosine schedule, evaluation every epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    steps = epochs * math.ceil(len(train_x) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    extra = [m for m in model.modules() if hasattr(m, "extra_loss")]
    device = train_x.device
    cuda = device.type == "cuda"  # on a GPU the hand-written loop uses bf16 autocast and channels_last too
    if cuda:
        model.to(memory_format=torch.channels_last)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(train_x), batch_size):
            index = order[start : start + batch_size].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                output = model(train_x[index])
            loss = F.cross_entropy(output.float(), train_y[index], label_smoothing=label_smoothing)
            for module in extra:
                term = module.extra_loss()
                if term is not None:
                    loss = loss + term
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            accuracy = float((model(val_x).argmax(1) == val_y).float().mean())
    return accuracy


def main() -> None:
    import optuna

    from nas.candidate import Candidate, build_candidate
    from nas.search.local import run_local
    from nas.search.progress import SearchProgress
    from nas.space import load_space
    from nas.train import train
    from nas.trial import TrialContext

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=None, help="default: the space's")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timings of the two loops")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    overrides = [f"search.trials={args.trials}", f"train.device={args.device}"]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    space = load_space("convops.yaml", overrides)
    with tempfile.TemporaryDirectory() as folder:
        cold = run_local(space, Path(folder) / "cold", SearchProgress(space.name, [], quiet=True))
        cold_s = {t.number: t.duration.total_seconds() for t in cold.get_trials() if t.duration}
        study = run_local(space, Path(folder) / "study", SearchProgress(space.name, [], quiet=True))
        finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))  # read before the folder goes
        same = [t.params for t in cold.get_trials()] == [t.params for t in study.get_trials()]
    context = TrialContext.create(space)
    settings = space.train
    rows = []
    for trial in finished:
        if trial.user_attrs.get("infeasible"):
            continue
        candidate = Candidate.from_dict(trial.user_attrs["candidate"])
        engine_loop, bare = math.inf, math.inf
        for _ in range(args.rounds):
            built = build_candidate(space, candidate, settings.seed, context.info.input_shape)
            train_data, val_data = context.data_for(tuple(built.input_shape))  # at the candidate's resolution
            started = time.perf_counter()
            train(built.module, train_data, val_data, context.plan())
            engine_loop = min(engine_loop, time.perf_counter() - started)
            model = build_candidate(space, candidate, settings.seed, context.info.input_shape).module.to(
                context.device
            )
            started = time.perf_counter()
            bare_loop(
                model,
                train_data.inputs,
                train_data.targets,
                val_data.inputs,
                val_data.targets,
                settings.epochs,
                settings.batch_size,
                settings.lr,
                settings.weight_decay,
                settings.label_smoothing,
                settings.seed,
            )
            bare = min(bare, time.perf_counter() - started)
        engine = trial.duration.total_seconds()
        fixed = engine - trial.user_attrs["metrics"]["train_seconds"]
        rows.append(
            dict(
                trial=trial.number,
                operators=candidate.operator_mix(),
                scale=candidate.scale,
                engine_cold_s=round(cold_s.get(trial.number, math.nan), 3),
                engine_s=round(engine, 3),
                fixed_s=round(fixed, 3),
                engine_loop_s=round(engine_loop, 3),
                bare_loop_s=round(bare, 3),
                overhead=round((fixed + engine_loop - bare) / (fixed + engine_loop), 4),
            )
        )
        print(
            f"trial {trial.number:2d}  trial {engine:6.2f}s (cold {rows[-1]['engine_cold_s']:.2f}s)  fixed {fixed:5.2f}s  "
            f"loop {engine_loop:6.2f}s  bare loop {bare:6.2f}s  overhead {rows[-1]['overhead']:+.1%}"
            f"   ({candidate.operator_mix()}, scale {candidate.scale:g})"
        )
    fixed_total = sum(r["fixed_s"] for r in rows)
    loop_total = sum(r["engine_loop_s"] for r in rows)
    bare_total = sum(r["bare_loop_s"] for r in rows)
    summary = dict(
        benchmark="trial overhead",
        target="engine overhead <= 5% of a trial",
        space="convops.yaml",
        device=str(context.device),
        torch=torch.__version__,
        machine=platform.machine(),
        threads=torch.get_num_threads(),
        epochs=settings.epochs,
        rounds=args.rounds,
        same_candidates_both_passes=same,
        fixed_overhead=round(fixed_total / sum(r["engine_s"] for r in rows), 4),
        loop_over_bare=round(loop_total / bare_total, 4),
        overhead_total=round((fixed_total + loop_total - bare_total) / (fixed_total + loop_total), 4),
        overhead_median=round(statistics.median(r["overhead"] for r in rows), 4) if rows else None,
        rows=rows,
    )
    print(
        f"total: fixed {fixed_total:.2f}s ({summary['fixed_overhead']:.1%} of the trials), engine loop "
        f"{loop_total:.2f}s vs bare {bare_total:.2f}s ({summary['loop_over_bare']:.3f}x), overhead "
        f"{summary['overhead_total']:+.1%}"
    )
    out = Path(args.out or Path(__file__).parent / "results" / f"trial_{context.device.type}.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
