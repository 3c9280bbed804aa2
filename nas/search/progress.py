"""What the user sees while a search runs: a live panel on a terminal, plain log lines otherwise.

Panel: trial i/N, epoch, current metrics, best so far (or the Pareto front's size), failures. A trial that early
stopping ends at a rung shows as "stopped at epoch E" with its objectives as measured then.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.text import Text


def _format_metrics(
    metrics: dict[str, Any], keys: tuple[str, ...] = ("accuracy", "psnr", "loss", "train_loss")
) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), (int, float)))


def _partial_values(objectives: list[str], metrics: dict[str, Any]) -> str:
    """A stopped trial's objectives as measured at the epoch it stopped at."""
    return ", ".join(f"{o} {metrics[o]:.4g}" for o in objectives if isinstance(metrics.get(o), (int, float)))


class SearchProgress:
    """Callbacks for the search loop; renders live on a TTY and as lines elsewhere."""

    def __init__(
        self, study_name: str, objectives: list[str], live: bool | None = None, quiet: bool = False
    ) -> None:
        self.console = Console(stderr=False)
        self.live_mode = sys.stdout.isatty() if live is None else live
        self.quiet = quiet
        self.study_name, self.objectives = study_name, objectives
        self.total, self.done, self.failed = 0, 0, 0
        self.current: dict[str, Any] = {}
        self.running: set[int] = set()  # trials started, not finished (several when parallel)
        self.best = "-"
        self.started = time.perf_counter()
        self._live: Live | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self, total: int, already_done: int, summary: str) -> None:
        self.total, self.done = total, already_done
        self.line(f"study {self.study_name}: {summary}")
        if already_done:
            self.line(f"resuming: {already_done} trials already finished")
        if self.live_mode and not self.quiet:
            self._live = Live(self._panel(), console=self.console, refresh_per_second=4, transient=True)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def line(self, message: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(message, highlight=False)
        else:
            print(message, flush=True)

    # -- events ---------------------------------------------------------------------------------------------
    def trial_started(self, number: int, description: str) -> None:
        self.current = {"number": number, "description": description, "epoch": 0, "metrics": {}}
        self.running.add(number)
        if not self.live_mode:
            self.line(f"trial {number} started ({self.done + len(self.running)}/{self.total}): {description}")
        self._refresh()

    def epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, Any]) -> None:
        self.current.update(epoch=epoch, epochs=epochs, metrics=metrics)
        if not self.live_mode:
            self.line(f"  trial {number} epoch {epoch}/{epochs}: {_format_metrics(metrics)}")
        self._refresh()

    def trial_finished(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.done += 1
        self.running.discard(trial.number)
        if trial.state == TrialState.FAIL:
            self.failed += 1
        self.best = self._best(study)
        values = ", ".join(f"{o} {v:.4g}" for o, v in zip(self.objectives, trial.values or []))
        status = trial.state.name.lower()
        if trial.user_attrs.get("infeasible"):
            status = "infeasible (not trained)"
        stopped_at = trial.user_attrs.get("stopped_at_epoch")
        if trial.state == TrialState.PRUNED and stopped_at is not None:
            status = f"stopped at epoch {stopped_at} (early stopping)"
            values = _partial_values(self.objectives, trial.user_attrs.get("metrics", {}))
        error = trial.user_attrs.get("error")
        detail = f"  error: {error}" if error else ""
        self.line(
            f"trial {trial.number} {status} [{self.done}/{self.total}] {values}{detail}   best: {self.best}"
        )
        self._refresh()

    # -- rendering ------------------------------------------------------------------------------------------
    def _best(self, study: optuna.Study) -> str:
        try:
            if len(self.objectives) == 1:
                best = study.best_trial
                return f"{self.objectives[0]} {best.value:.4g} (trial {best.number})"
            return f"Pareto front of {len(study.best_trials)} trials"
        except ValueError:
            return "-"

    def _panel(self) -> Text:
        elapsed = time.perf_counter() - self.started
        text = Text()
        text.append(f"{self.study_name}", style="bold")
        text.append(
            f"  trial {min(self.done + 1, self.total)}/{self.total}  failed {self.failed}  {elapsed:.0f}s\n"
        )
        if self.current:
            epoch = f"epoch {self.current.get('epoch', 0)}/{self.current.get('epochs', '?')}"
            text.append(f"trial {self.current['number']}: {self.current['description']}\n", style="dim")
            text.append(f"{epoch}  {_format_metrics(self.current.get('metrics', {}))}\n")
        text.append(f"best: {self.best}")
        return text

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._panel())
