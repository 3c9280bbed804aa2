"""The Ray backend: ``nas search --space S --backend ray [--address ADDR]``.

Ray Tune runs the trial pipeline of the local backend on the workers of a Ray cluster; Optuna stays the searcher
(``OptunaSearch`` on the study's storage, see ``ray_searcher``), so ``nas report`` and ``nas export`` read the
study the same whichever backend ran it.

- Where: without ``--address`` a local Ray instance is started (no dashboard) and stopped at the end;
  ``--address auto`` or ``HOST:6379`` joins a running cluster (``nas submit`` runs this inside a Ray Job there).
- Per trial: ``resources: {cpu, gpu}`` of the space (fractional GPUs share one card); at most ``search.parallel``
  trials at once; ``search.timeout`` stops handing out new trials.
- Early stopping: ``search.early_stopping`` (MO-ASHA, any number of objectives) runs inside the trainable as it
  does locally (``early_stopping``): each worker opens the study's storage and records and reads the rung ledger
  there; a trial stopped at a rung reports a "stopped" outcome that the recorder makes PRUNED with its partial
  metrics and ``stopped_at_epoch``; Tune's scheduler stays FIFO. A single-objective space with ``search.pruner``
  set (median or hyperband) runs Tune's ASHA scheduler on that objective instead (Optuna's pruners do not run
  inside Tune); otherwise trials run to the end (FIFO). Pruned trials are PRUNED in the study.
- Faults: each epoch but the last reports a checkpoint of the training state; a trial whose worker dies is
  restarted from it, at most ``search.max_retries`` times, then recorded as failed with Ray's reason.
  An interrupted search (Ctrl-C, a killed driver, a stopped job) is restored with Ray Tune's ``Tuner.restore``
  when the same command runs again: unfinished trials resume from their checkpoints, then the budget is filled.
- Storage, where the client sees the results:
  * default: the journal file ``<study dir>/journal.log``. The study directory (also ``trials/<N>/`` and Tune's
    ``ray/`` experiment with the checkpoints) must be on a filesystem the driver, every worker node and the
    client share (NFS, or a single machine). Ray Tune requires the same of its storage path on a multi-node
    cluster.
  * an Optuna storage URL (``storage:`` in the space, or ``--storage``), e.g. ``postgresql://user@db/nas``:
    the study (trials, values, metrics) is visible to any client that reaches the database; the trial files and
    checkpoints still go to the study directory.
  * neither shared: the search runs and records on the cluster's side, but a client that does not see that
    directory finds no study there (``nas report`` says it is not a study directory); read the report in the
    job's logs (``nas submit --logs ID``) or on the head node.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ..errors import NasError
from ..space.schema import Space
from .baselines import enqueue_baselines
from .local import announce
from .progress import SearchProgress
from .ray_context import RECORD_KEY, RayRun, lookup, optuna_number, register, unregister
from .sampling import SearchPlan, make_sampler
from .study import check_or_write_space, finished_count, open_storage, open_study, recover_interrupted

EXPERIMENTS = "ray"  # <study dir>/ray/run-<k>/: Ray Tune's experiments (state, per-trial checkpoints)
FINISHED_MARK = ".nas-finished"
TRAINING_METRICS = ("accuracy", "psnr", "ssim", "loss")  # known per epoch: what ASHA can compare


def run_ray(
    space: Space,
    study_dir: Path,
    progress: SearchProgress,
    storage_url: str | None = None,
    address: str | None = None,
) -> optuna.Study:
    """Run the study on Ray until ``search.trials`` trials are finished (or ``search.timeout`` passes)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if address is not None:
        check_reachable(address)
    here = os.getcwd()  # what relative paths of the space mean, for the driver and the trials
    study_dir = Path(study_dir).resolve()
    check_or_write_space(space, study_dir)
    study = open_study(space, open_storage(space, study_dir, storage_url), make_sampler(space))
    info = _data_info(space)
    plan = SearchPlan.from_space(space, info.input_shape)
    baselines = enqueue_baselines(study, space, plan)
    # Inside a Ray Job, Ray 2.60 deletes and unpacks the job's working_dir again whenever a new runtime env that
    # uses it is set up on the node (the driver's connection, the trials' actors): a process working in it is
    # left in a deleted directory. The driver has read its files; it waits in the study directory, and the
    # trials step into `here` (the path) when they start.
    deadline = time.time() + space.search.timeout if space.search.timeout else None
    key = register(RayRun(space, study_dir, study, progress, deadline, cwd=here, storage_url=storage_url))
    root = study_dir / EXPERIMENTS
    per_trial = f"{space.resources.cpu:g} CPU" + (
        f", {space.resources.gpu:g} GPU" if space.resources.gpu else ""
    )
    try:
        os.chdir(study_dir)
        with _driver_lock(root), ray_session(address) as where:
            _check_resources(space)
            summary = (
                f"{plan.size_summary()}; {info.train_size} training / {info.val_size} validation "
                f"samples; on {where}, {per_trial} per trial, up to {space.search.parallel} at once"
            )
            announce(progress, space, study, summary, baselines)
            _search(key, plan, root)
    finally:
        progress.stop()
        unregister(key)
        if os.path.isdir(here):
            os.chdir(here)
    return study


def _search(key: str, plan: SearchPlan, root: Path) -> None:
    run = lookup(key)
    space, study = run.space, run.study
    unfinished = _unfinished_experiment(root)
    if unfinished is not None and finished_count(study) < space.search.trials:
        run.progress.line(f"resuming the interrupted Ray Tune experiment {unfinished.name}")
        try:
            _fit(run, _restored_tuner(key, unfinished), unfinished)
        except (KeyboardInterrupt, NasError):
            raise
        except Exception as error:  # a damaged experiment: its unfinished trials are retried instead
            run.progress.line(
                f"cannot resume {unfinished.name} ({type(error).__name__}: {str(error)[:200]}); "
                f"its unfinished trials are retried"
            )
            (unfinished / FINISHED_MARK).touch()
            run.running.clear()
    retried = recover_interrupted(study, space.search.max_retries)
    if retried:
        run.progress.line(f"retrying interrupted trials {retried}")
    remaining = space.search.trials - finished_count(study)
    if remaining <= 0:
        run.progress.line(f"all {space.search.trials} trials are finished (raise --trials to run more)")
        return
    name = f"run-{max((int(p.name[4:]) for p in _experiments(root)), default=0) + 1}"
    _fit(run, _new_tuner(key, plan, root, name, remaining), root / name)


def _fit(run: RayRun, tuner: tune.Tuner, path: Path) -> None:
    tuner.fit()
    if run.running:  # Tune stopped on SIGINT, saving the experiment with these trials unfinished
        raise KeyboardInterrupt
    (path / FINISHED_MARK).touch()


# -- Ray Tune objects ---------------------------------------------------------------------------------------
def _trainable(run: RayRun):
    from .ray_trainable import run_candidate

    resources = {"cpu": run.space.resources.cpu, "gpu": run.space.resources.gpu}
    return tune.with_resources(
        tune.with_parameters(
            run_candidate,
            space=run.space,
            study_dir=str(run.study_dir),
            cwd=run.cwd,
            storage_url=run.storage_url,
        ),
        resources,
    )


def _new_tuner(key: str, plan: SearchPlan, root: Path, name: str, samples: int):
    from .ray_recorder import StudyRecorder
    from .ray_searcher import NasOptunaSearch

    run = lookup(key)
    tune_config = tune.TuneConfig(
        search_alg=NasOptunaSearch(key, plan),
        scheduler=_scheduler(key, run.space),
        num_samples=samples,
        max_concurrent_trials=run.space.search.parallel,
        reuse_actors=True,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(root),
        callbacks=[StudyRecorder(key)],
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=run.space.search.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    return tune.Tuner(_trainable(run), tune_config=tune_config, run_config=run_config)


def _restored_tuner(key: str, path: Path):
    return tune.Tuner.restore(
        str(path), _trainable(lookup(key)), resume_unfinished=True, resume_errored=False
    )


def _trial_name(trial) -> str:
    return f"trial-{optuna_number(trial.config)}"


class PruningASHA(ASHAScheduler):
    """Tune's ASHA, noting which trials it stops early so the recorder tells Optuna they were pruned."""

    def __init__(self, key: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.key = key

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and RECORD_KEY not in result:
            lookup(self.key).pruned.add(trial.trial_id)
        return decision


def _scheduler(key: str, space: Space) -> TrialScheduler:
    """ASHA on the one objective when the space asks for pruning; FIFO (every trial to the end) otherwise."""
    objective = space.objectives[0]
    if space.search.pruner == "none" or len(space.objectives) > 1 or objective.metric not in TRAINING_METRICS:
        return FIFOScheduler()
    return PruningASHA(
        key,
        time_attr="training_iteration",
        metric=objective.metric,
        mode="max" if objective.direction == "maximize" else "min",
        max_t=space.train.epochs,
        grace_period=1,
        reduction_factor=2,
    )


# -- the study directory's experiments ----------------------------------------------------------------------
def _experiments(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("run-") and p.name[4:].isdigit()]
    return sorted(runs, key=lambda p: int(p.name[4:]))


def _unfinished_experiment(root: Path) -> Path | None:
    runs = _experiments(root)
    if not runs or (runs[-1] / FINISHED_MARK).exists() or not tune.Tuner.can_restore(str(runs[-1])):
        return None
    return runs[-1]


@contextmanager
def _driver_lock(root: Path) -> Iterator[None]:
    """One driver per study directory: a second one would restore the same Tune experiment."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "driver.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise NasError(
                f"{root.parent}: another `nas search --backend ray` is running this study"
            ) from None
        yield


# -- the Ray session ----------------------------------------------------------------------------------------
def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a cluster address nothing answers at (``ray.init`` would retry for minutes)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise NasError(f"--address {address!r}: expected HOST:PORT (the head's GCS, e.g. HEAD:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise NasError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


@contextmanager
def ray_session(address: str | None) -> Iterator[str]:
    """Connect to ``address`` (``auto``, ``HOST:PORT``) or start a local Ray instance; shut it down after.
    A process that is connected already (a notebook, the tests) keeps its connection."""
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials keep the driver's working directory
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own reporter stays silent (verbose=0)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        yield "the connected Ray cluster"
        return
    try:
        if address is None:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
            where = "a local Ray instance"
        else:
            ray.init(address=address, logging_level=logging.WARNING)
            where = f"the Ray cluster at {address}"
    except Exception as error:  # ConnectionError, AuthenticationError, RuntimeError, ...
        ray.shutdown()
        target = f"the Ray cluster at {address}" if address else "a local Ray instance"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NasError(f"cannot reach {target}: {reason}") from None
    try:
        yield where
    finally:
        ray.shutdown()


def _check_resources(space: Space) -> None:
    """A trial must fit on one node, or Tune would wait for it forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    need_cpu, need_gpu = space.resources.cpu, space.resources.gpu
    if any(r.get("CPU", 0) >= need_cpu and r.get("GPU", 0) >= need_gpu for r in nodes):
        return
    largest = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no nodes"
    raise NasError(
        f"resources: a trial asks for {need_cpu:g} CPU and {need_gpu:g} GPU, more than any node of the "
        f"cluster has ({largest})"
    )


def _data_info(space: Space):
    from ..data import DataConfig, load_data

    config = DataConfig(
        space.data.name, space.data.root, space.data.val_fraction, space.data.seed, dict(space.data.options)
    )
    return load_data(config, tuple(space.model.input) if space.model.input else None)[2]
