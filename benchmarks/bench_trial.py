"""Engine overhead per trial on the default space, against a bare PyTorch loop in the same run.

For each trial of a short search on ``convops.yaml`` (the engine: sample, build, capture, scale, rewrite, cost,
train, evaluate, record), the same candidate model is rebuilt and trained again by a bare hand-written loop
(same data tensors, optimizer, schedule, epochs, batch size, evaluation each epoch). Overhead = engine trial time
minus bare loop time, as a fraction of the engine trial time. Target (issue 5): at most 5%.

    python benchmarks/bench_trial.py [--trials 6] [--epochs 8] [--device cpu]
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
    from nas.trial import TrialContext

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=None, help="default: the space's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    overrides = [f"search.trials={args.trials}", f"train.device={args.device}"]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    space = load_space("convops.yaml", overrides)
    with tempfile.TemporaryDirectory() as folder:
        study = run_local(space, Path(folder) / "study", SearchProgress(space.name, [], quiet=True))
        finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))  # read before the folder goes
    context = TrialContext.create(space)
    rows = []
    for trial in finished:
        if trial.user_attrs.get("infeasible"):
            continue
        candidate = Candidate.from_dict(trial.user_attrs["candidate"])
        built = build_candidate(space, candidate, space.train.seed, context.info.input_shape)
        model = built.module.to(context.device)
        train, val = context.data_for(
            tuple(built.input_shape)
        )  # the trial's data, at the candidate's resolution
        started = time.perf_counter()
        settings = space.train
        bare_loop(model, train.inputs, train.targets, val.inputs, val.targets, settings.epochs, settings.batch_size,
                  settings.lr, settings.weight_decay, settings.label_smoothing, settings.seed)  # fmt: skip
        bare = time.perf_counter() - started
        engine = trial.duration.total_seconds()
        rows.append(dict(trial=trial.number, operators=candidate.operator_mix(), scale=candidate.scale,
                         engine_s=round(engine, 3), engine_train_s=round(trial.user_attrs["metrics"]["train_seconds"], 3),
                         bare_s=round(bare, 3), overhead=round((engine - bare) / engine, 4)))  # fmt: skip
        print(f"trial {trial.number:2d}  engine {engine:6.2f}s  bare loop {bare:6.2f}s  overhead {rows[-1]['overhead']:+.1%}"
              f"   ({candidate.operator_mix()}, scale {candidate.scale:g})")  # fmt: skip
    total_engine = sum(r["engine_s"] for r in rows)
    total_bare = sum(r["bare_s"] for r in rows)
    summary = dict(
        benchmark="trial overhead", target="engine overhead <= 5% of a trial", space="convops.yaml",
        device=str(context.device), torch=torch.__version__, machine=platform.machine(), threads=torch.get_num_threads(),
        epochs=space.train.epochs, overhead_total=round((total_engine - total_bare) / total_engine, 4),
        overhead_median=round(statistics.median(r["overhead"] for r in rows), 4) if rows else None, rows=rows,
    )  # fmt: skip
    print(
        f"total: engine {total_engine:.2f}s, bare {total_bare:.2f}s, overhead {summary['overhead_total']:+.1%}"
    )
    out = Path(args.out or Path(__file__).parent / "results" / f"trial_{context.device.type}.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
