"""One trial on a Ray worker: the same trial pipeline as the local backend (``nas.trial.run_trial``), reporting
every epoch to Ray Tune with a checkpoint of the training state, and the outcome as its last result.

A trial whose worker dies is restarted by Tune from its last checkpoint (``search.max_retries`` times): training
resumes after the last finished epoch. With ``search.early_stopping`` the worker opens the study's storage and
takes each rung decision from the shared ledger (``early_stopping``), before the epoch's checkpoint is reported;
a trial stopped at a rung ends with a "stopped" outcome (its metrics then and ``stopped_at_epoch``). A trial that raises (bad candidate, NaN, out of memory) is not retried:
its error is its outcome, recorded as a failed Optuna trial by the driver (``ray_recorder``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ..candidate import Candidate
from ..space.schema import Space
from ..trial import TrialContext, run_trial, save_json
from .early_stopping import EarlyStopped, RungLedger
from .local import describe_error
from .ray_context import NAS_KEY, RECORD_KEY
from .study import trial_dir

STATE_FILE = "train_state.pt"


class TuneCheckpoint:
    """The training state of the last finished epoch as a Ray Tune checkpoint (``nas.train.TrainCheckpoint``)."""

    def __init__(self, restored: tune.Checkpoint | None) -> None:
        self.restored = restored
        self._pending: Path | None = None

    def load(self) -> dict[str, Any] | None:
        if self.restored is None:
            return None
        with self.restored.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        self.discard()
        self._pending = Path(tempfile.mkdtemp(prefix=f"nas-epoch{epoch}-"))
        torch.save(state, self._pending / STATE_FILE)

    @contextmanager
    def take(self) -> Iterator[tune.Checkpoint | None]:
        """The state saved since the last report, as a checkpoint to report (Tune copies it to its storage)."""
        try:
            yield tune.Checkpoint.from_directory(str(self._pending)) if self._pending else None
        finally:
            self.discard()

    def discard(self) -> None:
        if self._pending is not None:
            shutil.rmtree(self._pending, ignore_errors=True)
            self._pending = None


_CONTEXT: dict[str, TrialContext] = {}  # the last study's data, kept on the device by a reused worker


def _context(space: Space) -> TrialContext:
    """The trial context of ``space`` in this worker: created once, reused by the next trial Tune runs here."""
    key = json.dumps(dict(space.raw), sort_keys=True, default=str)
    if key not in _CONTEXT:
        _CONTEXT.clear()
        _CONTEXT[key] = TrialContext.create(space, threads=max(1, int(space.resources.cpu)))
    torch.set_num_threads(max(1, int(space.resources.cpu)))
    return _CONTEXT[key]


def trial_config(number: int, trial_id: int, candidate: Candidate) -> dict[str, Any]:
    """What the searcher hands a Tune trial: the Optuna trial it belongs to and the candidate to run."""
    return {NAS_KEY: {"number": number, "trial_id": trial_id, "candidate": candidate.to_dict()}}


def run_candidate(
    config: dict[str, Any], space: Space, study_dir: str, cwd: str, storage_url: str | None = None
) -> None:
    """The Tune trainable. Writes ``trials/<N>/`` in the study directory as the local backend does."""
    # Quiet: not a line per checkpoint in the driver's output.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if os.path.isdir(cwd):  # relative paths in the space (data roots, model files) mean what they do locally
        os.chdir(cwd)
    info = config[NAS_KEY]
    epochs = space.train.epochs
    shown = {o.metric: math.nan for o in space.objectives}  # every result carries the searcher's metrics
    last: dict[str, Any] = {}
    checkpoint = TuneCheckpoint(tune.get_checkpoint())
    shown["node_id"] = ray.get_runtime_context().get_node_id()  # where it ran, for the record

    folder = trial_dir(Path(study_dir), int(info["number"]))
    ledger = RungLedger.open(space, Path(study_dir), storage_url) if space.search.early_stopping else None

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        last.clear()
        last.update(metrics, epoch=epoch)
        if ledger is not None:  # decided before the checkpoint: a trial restored after a stop stops again
            ledger.check(int(info["trial_id"]), epoch, metrics)
        if epoch < epochs:  # the last epoch's metrics travel with the outcome
            with checkpoint.take() as saved:
                tune.report({**shown, **metrics, "epoch": epoch}, checkpoint=saved)

    try:
        context = _context(space)
        candidate = Candidate.from_dict(info["candidate"])
        outcome = run_trial(context, candidate, folder, on_epoch, checkpoint=checkpoint)
        record: dict[str, Any] = {
            "state": outcome.state,
            "values": outcome.values,
            "constraints": outcome.constraints,
            "metrics": outcome.metrics,
        }
        shown.update(zip((o.metric for o in space.objectives), outcome.values))
    except EarlyStopped as stop:
        save_json(folder / "metrics.json", stop.metrics)
        record = {"state": "stopped", "epoch": stop.epoch, "metrics": stop.metrics}
    except Exception as error:
        record = {"state": "failed", "error": describe_error(error)}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    finally:
        checkpoint.discard()
    tune.report({**shown, **last, RECORD_KEY: json.dumps(record, default=str)})
