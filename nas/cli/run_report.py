"""``nas report --run DIR``: a ``nas train`` run: what was trained, its metrics per epoch, the final validation
metrics and the deployed model's costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from .common import console_for_tables, print_json

EPOCH_COLUMNS = ("accuracy", "psnr", "ssim", "loss", "train_loss")


def run_data(directory: Path) -> dict[str, Any]:
    from ..run import load_run

    run = load_run(directory)
    record = {k: v for k, v in run.record.items() if k != "identity"}
    return {
        "run": str(directory),
        **record,
        "candidate": run.candidate,
        "metrics": run.metrics,
        "epochs": run.epochs,
    }


def report_run(directory: Path, as_json: bool) -> int:
    data = run_data(directory)
    if as_json:
        print_json(data)
        return 0
    from .export_cmd import _short
    from .train_cmd import _factor_line, _summary, _what

    console = console_for_tables()
    console.print(
        f"[bold]run {data['run']}[/bold]: {_what(data)}, {data['state']}, {data['train_epochs']} epochs, "
        f"init {data.get('init', 'scratch')}",
        highlight=False,
    )
    console.print(f"  candidate  {_short(data['candidate'], 'candidate')}", highlight=False)
    console.print(f"  scaling    {_factor_line(data)}", highlight=False)
    if data.get("overrides"):
        console.print(f"  overrides  {' '.join(data['overrides'])}", highlight=False)
    epochs = data["epochs"]
    columns = [c for c in EPOCH_COLUMNS if any(c in values for values in epochs.values())]
    table = Table(title="validation per epoch")
    for column in ("epoch", *columns):
        table.add_column(column, justify="right")
    for epoch, values in sorted(epochs.items(), key=lambda item: int(item[0])):
        table.add_row(epoch, *[f"{values[c]:.4f}" if c in values else "-" for c in columns])
    if epochs:
        console.print(table)
    if data["metrics"]:
        console.print(_summary(None, data["metrics"], data), highlight=False)
    else:
        console.print(
            f"not finished: {len(epochs)} epoch(s) so far; run the same `nas train` command again to resume",
            highlight=False,
        )
    return 0
