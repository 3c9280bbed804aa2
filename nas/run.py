"""A training run: one candidate (a study's trial or a candidate file), optionally scaled, trained from scratch with
the trial pipeline (``nas.trial.run_trial``, the same code path as a search's trials) into its own directory::

    <run dir>/
        run.json        what was asked and what it resolved to: source, base candidate, factor, rule, flops
                        target and achieved, init, overrides; ``state`` running | done
        space.yaml      the space as trained (overrides applied; the search's constraints dropped)
        candidate.json  the candidate trained: its scale is the base candidate's scale times the factor
        epochs.json     validation metrics per epoch
        metrics.json    final validation metrics, costs of the deployed model, latency
        weights.pt      the trained state dict (``torch.load(..., weights_only=True)``)
        checkpoint.pt   the last finished epoch's training state, until the run is done
        log.txt

Scaling composes as a factor on the base model: a candidate at scale ``s`` scaled by ``f`` is the space's base
model scaled by ``s * f`` (one application of the rule, then the same operators per group). Running the same
request again resumes it from ``checkpoint.pt`` (after kill -9 too) or, when it is done, changes nothing.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

import operators

from .candidate import Candidate, build_candidate
from .errors import NasError
from .space.schema import COST_METRICS, Space
from .trial import TrialContext, TrialOutcome, run_trial, save_json

FORMAT = "nas-run/1"
RUN_FILE, SPACE_FILE, CANDIDATE_FILE = "run.json", "space.yaml", "candidate.json"
EPOCHS_FILE, METRICS_FILE, WEIGHTS_FILE, CHECKPOINT_FILE = (
    "epochs.json",
    "metrics.json",
    "weights.pt",
    "checkpoint.pt",
)
# Keys a resumed run may change (placement, not what is trained).
RESUMABLE = ("train.device",)


class FileCheckpoint:
    """The last finished epoch's training state in one file (``nas.train.TrainCheckpoint``), replaced atomically."""

    def __init__(self, path: Path, on_save: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.path, self.on_save = Path(path), on_save

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        if self.on_save is not None:
            self.on_save(epoch, state["metrics"])
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


# -- the request ------------------------------------------------------------------------------------------------
def run_space(raw: Mapping[str, Any], overrides: Sequence[str] = (), rule: str | None = None) -> Space:
    """The space a run trains with: the search's, with ``--set`` overrides and ``rule`` applied and its
    constraints dropped (a deliberately scaled model may exceed the search's budget)."""
    from .space.convert import SchemaError
    from .space.loader import SpaceError, apply_override, build_space

    data = copy.deepcopy(dict(raw))
    for assignment in overrides:
        apply_override(data, assignment)
    data.pop("constraints", None)
    if rule is not None:
        data["scaling"] = {**dict(data.get("scaling") or {}), "rule": rule}
    try:
        return build_space(data, "")
    except SchemaError as error:
        raise SpaceError(f"{error.path or '(top level)'}: {error.problem}") from None


def read_candidate(data: Any, what: str) -> Candidate:
    """A candidate from its JSON form (``{"scale": S, "operators": {group: {"name", "params"}}}``), checked: known
    operators, known parameters, positive scale; a problem is one NasError line naming ``what``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("operators", {}), Mapping):
        raise NasError(
            f"{what}: expected {{'scale': S, 'operators': {{group: {{'name': ..., 'params': ...}}}}}}"
        )
    scale = data.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise NasError(f"{what}: scale must be a positive number, got {scale!r}")
    for group, assignment in data.get("operators", {}).items():
        if not isinstance(assignment, Mapping) or "name" not in assignment:
            raise NasError(f"{what}: group {group!r} needs an operator 'name'")
        try:
            operators.get(assignment["name"]).validate_params(dict(assignment.get("params") or {}))
        except (KeyError, ValueError, TypeError) as error:
            raise NasError(f"{what}: group {group!r}: {str(error).strip(chr(34) + chr(39))}") from None
    return Candidate.from_dict(data)


@dataclass
class StudyTrial:
    space: Space
    number: int
    state: str
    candidate: dict[str, Any]
    metrics: dict[str, Any]
    weights: Path

    def objective_metrics(self) -> dict[str, float]:
        return {
            o.metric: self.metrics[o.metric]
            for o in self.space.objectives
            if isinstance(self.metrics.get(o.metric), (int, float))
        }


def study_trial(
    study_dir: Path, number: int, storage_url: str | None = None, need_weights: bool = False
) -> StudyTrial:
    """Trial ``number`` of a study: its candidate whatever its state (an infeasible or failed trial's candidate
    can be trained too); with ``need_weights``, only a completed trial with its ``weights.pt``."""
    from .search.report import state_name
    from .search.study import load_existing_study, trial_dir

    space, study = load_existing_study(Path(study_dir), storage_url)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        known = f"0..{max(trials)}" if trials else "none yet"
        raise NasError(f"trial {number}: no such trial in {study_dir} (trials: {known})")
    trial, folder = trials[number], trial_dir(Path(study_dir), number)
    candidate = trial.user_attrs.get("candidate") or _load_json(folder / CANDIDATE_FILE, None)
    if candidate is None:
        raise NasError(f"trial {number}: no candidate recorded (neither in the study nor in {folder})")
    state = state_name(trial)
    if need_weights and (state != "complete" or not (folder / WEIGHTS_FILE).is_file()):
        raise NasError(
            f"--init trial: trial {number} ({state}) has no trained weights ({folder / WEIGHTS_FILE})"
        )
    metrics = dict(trial.user_attrs.get("metrics") or _load_json(folder / METRICS_FILE, {}))
    return StudyTrial(space, number, state, dict(candidate), metrics, folder / WEIGHTS_FILE)


def read_candidate_file(path: Path) -> Candidate:
    path = Path(path)
    if not path.is_file():
        raise NasError(f"--candidate {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise NasError(f"--candidate {path}: not JSON ({error})") from None
    return read_candidate(data, f"--candidate {path}")


def scaled(candidate: Candidate, factor: float) -> Candidate:
    """``candidate`` scaled by ``factor``: the base model scaled by ``candidate.scale * factor``."""
    return Candidate(candidate.scale * factor, candidate.operators)


def check_groups(space: Space, candidate: Candidate, groups: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(candidate.operators) - set(groups))
    if unknown:
        raise NasError(
            f"{what}: group {unknown[0]!r} is not a conv group of {space.model.ref} at scale "
            f"{candidate.scale:g} (groups: {', '.join(groups) or 'none'})"
        )


def flops_of(space: Space, candidate: Candidate, input_shape: tuple[int, ...] | None) -> int:
    """The flops of a candidate, built and counted on the meta device (no weights are materialized)."""
    from .cost import count

    with torch.device("meta"):
        return count(build_candidate(space, candidate, space.train.seed, input_shape).module).flops


def fit_flops(space: Space, candidate: Candidate, target: float, input_shape: tuple[int, ...] | None):
    """The factor on ``candidate`` whose scaled model's flops are closest to ``target`` (``FlopsFit``)."""
    from .scaling.target import factor_for_flops

    return factor_for_flops(lambda f: flops_of(space, scaled(candidate, f), input_shape), target)


def plan_run(
    space: Space,
    base: Candidate,
    source: dict[str, Any],
    input_shape: tuple[int, ...] | None,
    *,
    factor: float | None = None,
    flops: float | None = None,
    base_rule: str | None = None,
    init_weights: Path | None = None,
    overrides: Sequence[str] = (),
) -> RunRequest:
    """Resolve what to train: ``base`` scaled by ``factor``, or by the factor whose flops come closest to
    ``flops``; ``base_rule`` is the rule that scaled ``base`` (a different rule cannot compose with it)."""
    what = f"trial {source['trial']}" if "trial" in source else f"--candidate {source.get('candidate')}"
    rule = space.scaling.rule
    if factor is not None and flops is not None:
        raise NasError("choose one of --factor and --flops")
    if factor is not None and not (factor > 0 and math.isfinite(factor)):
        raise NasError(f"--factor {factor:g}: expected a positive number")
    if base_rule is not None and rule != base_rule and not math.isclose(base.scale, 1.0):
        raise NasError(
            f"--rule {rule}: {what} was scaled x{base.scale:g} by {base_rule}; a run scales the base model once, "
            f"by one rule (use --rule {base_rule}, or a candidate at scale 1)"
        )
    with torch.device("meta"):
        groups = build_candidate(space, base, space.train.seed, input_shape).groups
    check_groups(space, base, groups, what)
    base_flops = flops_of(space, base, input_shape)
    fit = fit_flops(space, base, flops, input_shape) if flops is not None else None
    factor = fit.factor if fit is not None else (1.0 if factor is None else float(factor))
    candidate = scaled(base, factor)
    if init_weights is not None and not math.isclose(factor, 1.0):
        raise NasError(
            f"--init trial: the trial's weights fit its own model only; drop --factor/--flops (x{factor:g})"
        )
    record = {
        "source": source,
        "space": space.name,
        "base_candidate": base.to_dict(),
        "base_flops": base_flops,
        "factor": factor,
        "rule": rule,
        "flops_target": flops,
        "flops": fit.flops if fit is not None else flops_of(space, candidate, input_shape),
        "flops_steps": _steps(fit) if fit is not None else None,
        "init": "trial" if init_weights is not None else "scratch",
        "overrides": list(overrides),
        "train_epochs": space.train.epochs,
    }
    return RunRequest(space, candidate, record, init_weights, list(overrides))


def _steps(fit: Any) -> list[int | None]:
    """The evaluated flops nearest the target from below and from above: the rounding's steps around it."""
    below = [f for f in fit.evaluations.values() if f <= fit.target]
    above = [f for f in fit.evaluations.values() if f >= fit.target]
    return [max(below) if below else None, min(above) if above else None]


@dataclass
class RunRequest:
    """A resolved request: train ``candidate`` (already scaled) with ``space``; ``record`` goes into run.json."""

    space: Space
    candidate: Candidate
    record: dict[str, Any]
    init_weights: Path | None = None  # the trial's weights for --init trial
    overrides: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What must match for a rerun to resume this run."""
        from .search.study import comparable

        space = {k: v for k, v in comparable(self.space).items() if k not in RESUMABLE}
        return json.loads(
            json.dumps(
                {"space": space, "candidate": self.candidate.to_dict(), "init": self.record.get("init")},
                sort_keys=True,
                default=str,
            )
        )


# -- the directory ---------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    directory: Path
    metrics: dict[str, Any]
    record: dict[str, Any]
    resumed_from_epoch: int | None = None
    already_done: bool = False


def _check_or_start(request: RunRequest, directory: Path) -> dict[str, Any] | None:
    """The stored record when ``directory`` holds this run (to resume or done); None for a new run; a NasError
    when it holds another run."""
    path = directory / RUN_FILE
    if not path.is_file():
        if directory.exists() and any(directory.iterdir()):
            raise NasError(f"--out {directory}: not empty and not a run directory; choose another --out")
        return None
    stored = json.loads(path.read_text())
    if stored.get("identity") != request.identity():
        old, new = stored.get("identity") or {}, request.identity()
        changed = sorted(
            k
            for k in set(old.get("space", {})) | set(new["space"])
            if old.get("space", {}).get(k) != new["space"].get(k)
        )
        if old.get("candidate") != new["candidate"]:
            changed.insert(0, "candidate")
        if old.get("init") != new["init"]:
            changed.insert(0, "init")
        raise NasError(
            f"{directory} holds another run (changed: {', '.join(changed[:4]) or 'the request'}); "
            "choose another --out or remove that directory"
        )
    return stored


def _load_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def train_run(
    request: RunRequest,
    directory: Path,
    *,
    context: TrialContext | None = None,
    echo: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    threads: int | None = None,
) -> RunResult:
    """Train the request into ``directory``: new, resumed from its checkpoint, or (done already) left as it is."""
    directory = Path(directory)
    stored = _check_or_start(request, directory)
    if stored is not None and stored.get("state") == "done":
        return RunResult(directory, _load_json(directory / METRICS_FILE, {}), stored, already_done=True)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT,
        **request.record,
        "identity": request.identity(),
        "state": "running",
        "started": (stored or {}).get("started", time.strftime("%Y-%m-%dT%H:%M:%S")),
    }
    save_json(directory / RUN_FILE, record)
    (directory / SPACE_FILE).write_text(yaml.safe_dump(dict(request.space.raw), sort_keys=False))
    epochs: dict[str, Any] = _load_json(directory / EPOCHS_FILE, {})

    def note_epoch(epoch: int, metrics: Mapping[str, Any]) -> None:
        epochs[str(epoch)] = {  # what the epoch measured; the costs are in metrics.json
            k: v
            for k, v in metrics.items()
            if isinstance(v, (int, float))
            and k not in COST_METRICS
            and k != "rewritten"
            and not k.startswith("latency")
        }
        for later in [
            k for k in epochs if int(k) > epoch
        ]:  # left by an attempt that died after its checkpoint
            del epochs[later]
        save_json(directory / EPOCHS_FILE, epochs)

    def report(epoch: int, metrics: dict[str, float]) -> None:
        note_epoch(epoch, metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    checkpoint = FileCheckpoint(directory / CHECKPOINT_FILE, note_epoch)
    context = context or TrialContext.create(request.space, threads=threads)
    outcome = run_trial(
        context, request.candidate, directory, report, echo, checkpoint, _initializer(request.init_weights)
    )
    metrics = _finish(request, directory, outcome, context)
    record.update(state="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    save_json(directory / RUN_FILE, record)
    checkpoint.discard()
    return RunResult(directory, metrics, record, metrics.get("resumed_from_epoch"))


def _initializer(weights: Path | None) -> Callable[[torch.nn.Module], None] | None:
    if weights is None:
        return None

    def initialize(module: torch.nn.Module) -> None:
        from .export.sources import load_weights

        load_weights(module, weights, "--init trial")

    return initialize


def _finish(
    request: RunRequest, directory: Path, outcome: TrialOutcome, context: TrialContext
) -> dict[str, Any]:
    """The final metrics with the deployed model's latency (the search measures it only when asked)."""
    from .graph.collapse import collapse_operators
    from .latency import LatencySettings, measure_latency

    metrics = dict(outcome.metrics)
    if "latency_ms" not in metrics:
        space = request.space
        built = build_candidate(space, request.candidate, space.train.seed, context.info.input_shape)
        settings = LatencySettings(
            device=space.latency.device,
            batch_size=space.latency.batch_size,
            threads=space.latency.threads,
            min_run_time=space.latency.min_run_time,
        )
        metrics.update(
            measure_latency(collapse_operators(built.module), built.input_shape, settings).as_dict()
        )
    save_json(directory / METRICS_FILE, metrics)
    return metrics


# -- reading a run back ------------------------------------------------------------------------------------------
@dataclass
class StoredRun:
    directory: Path
    space: Space
    candidate: dict[str, Any]
    record: dict[str, Any]
    metrics: dict[str, Any]
    epochs: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS_FILE

    @property
    def done(self) -> bool:
        return self.record.get("state") == "done"


def load_run(directory: Path) -> StoredRun:
    """A run directory as written by ``train_run``; a NasError when it is not one."""
    from .space.loader import build_space

    directory = Path(directory)
    if not (directory / RUN_FILE).is_file():
        raise NasError(f"{directory}: not a run directory (no {RUN_FILE}); train one with `nas train`")
    record = json.loads((directory / RUN_FILE).read_text())
    space = build_space(yaml.safe_load((directory / SPACE_FILE).read_text()), str(directory / SPACE_FILE))
    candidate = _load_json(directory / CANDIDATE_FILE, None)
    if candidate is None:
        raise NasError(f"{directory}: {CANDIDATE_FILE} is missing")
    return StoredRun(
        directory,
        space,
        candidate,
        record,
        _load_json(directory / METRICS_FILE, {}),
        _load_json(directory / EPOCHS_FILE, {}),
    )
