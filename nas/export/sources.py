"""What to export: a trial of a study (rebuilt, with its trained weights) or any model reference (random
initialization unless weights are given)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import NasError
from ..space.schema import Space
from .metadata import preprocessing_metadata
from .pipeline import ExportOptions, ExportResult, export_module
from .script import first_line
from .select import select_trial

VALIDATION_SAMPLES = 32


def load_weights(module: nn.Module, path: Path, what: str) -> None:
    """Load a state dict (``weights_only=True``) into ``module``, strictly; a mismatch is a NasError."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"{what}: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise NasError(
            f"{what}: {path} is not a state dict torch.load can read safely ({first_line(error)})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NasError(f"{what}: {path} holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise NasError(f"{what}: {path} does not match the model ({first_line(error)})") from None


@dataclass
class ValidationData:
    info: Any | None  # nas.data.DatasetInfo
    batch: torch.Tensor | None  # (N, C, H, W)
    note: str | None = None


def validation_data(space: Space, samples: int = VALIDATION_SAMPLES) -> ValidationData:
    """The dataset's info and the first validation inputs; when the data cannot be loaded here, a note."""
    from ..data import DataConfig, load_data

    config = DataConfig(
        space.data.name, space.data.root, space.data.val_fraction, space.data.seed, dict(space.data.options)
    )
    try:
        _, val, info = load_data(config, tuple(space.model.input) if space.model.input else None)
    except NasError as error:
        return ValidationData(
            None, None, f"validation data not available ({error}); verified on random inputs only"
        )
    count = min(samples, len(val))
    batch = torch.stack([val[index][0] for index in range(count)]) if count else None
    return ValidationData(info, batch)


def _at_input_shape(batch: torch.Tensor | None, input_shape: tuple[int, ...]) -> torch.Tensor | None:
    """Validation inputs at the model's input shape: resized as the trial pipeline resizes them for a scaled
    model (bilinear, antialiased); None when the channels differ."""
    if batch is None or tuple(batch.shape[1:]) == input_shape:
        return batch
    if batch.shape[1] != input_shape[0]:
        return None
    return torch.nn.functional.interpolate(batch, size=input_shape[1:], mode="bilinear", antialias=True)


def export_trial(
    study_dir: Path,
    options: ExportOptions,
    *,
    trial: int | None = None,
    best: str | None = None,
    pareto_rank: int | None = None,
    storage_url: str | None = None,
) -> ExportResult:
    """Rebuild the selected trial's model (``nas.candidate.build_candidate``), load ``weights.pt``, export."""
    selected = select_trial(
        study_dir, trial=trial, best=best, pareto_rank=pareto_rank, storage_url=storage_url
    )
    metadata = {
        "source": "study",
        "study": str(study_dir),
        "trial": selected.number,
        "selected_by": selected.reason,
    }
    return _export_trained(
        selected.space,
        selected.candidate,
        selected.metrics,
        selected.weights,
        f"trial {selected.number}",
        metadata,
        options,
    )


def export_run(run_dir: Path, options: ExportOptions) -> ExportResult:
    """A ``nas train`` run exported like a trial: rebuild its candidate, load its ``weights.pt``, export."""
    from ..run import load_run

    run = load_run(run_dir)
    if not run.done or not run.weights.is_file():
        raise NasError(
            f"{run_dir}: the run has not finished training (state {run.record.get('state')}); "
            "run the same `nas train` command again to resume it"
        )
    record = run.record
    metadata = {
        "source": "run",
        "run": str(run_dir),
        "trained_from": record.get("source"),
        "scaling": {
            key: record.get(key)
            for key in ("factor", "rule", "flops_target", "flops", "base_candidate", "init")
        },
    }
    return _export_trained(
        run.space, run.candidate, run.metrics, run.weights, f"run {run_dir}", metadata, options
    )


def _export_trained(
    space: Space,
    candidate_data: dict[str, Any],
    metrics: dict[str, Any],
    weights: Path,
    what: str,
    source: dict[str, Any],
    options: ExportOptions,
) -> ExportResult:
    """Rebuild a trained candidate (a trial's or a run's), load its weights and export it with its metadata."""
    from ..candidate import Candidate, build_candidate

    data = validation_data(space)
    candidate = Candidate.from_dict(candidate_data)
    built = build_candidate(space, candidate, space.train.seed, data.info.input_shape if data.info else None)
    recorded = metrics.get("input_shape")
    if recorded is not None and list(recorded) != list(built.input_shape):
        raise NasError(
            f"{what}: the rebuilt model takes {list(built.input_shape)}, it "
            f"recorded {list(recorded)}; the space or the code changed since it ran"
        )
    load_weights(built.module, weights, what)
    info = data.info
    metadata = {
        **source,
        "model": space.model.ref,
        "model_kwargs": dict(space.model.kwargs),
        "space": space.name,
        "objectives": {o.metric: o.direction for o in space.objectives},
        "candidate": candidate_data,
        "metrics": metrics,
        "dataset": space.data.name,
        "task": info.task if info else None,
        "num_classes": info.num_classes if info else None,
        "class_names": list(info.class_names) if info and info.class_names else None,
        "preprocessing": preprocessing_metadata(info, tuple(built.input_shape)),
    }
    batch = _at_input_shape(data.batch, tuple(built.input_shape))
    result = export_module(built.module, built.input_shape, metadata, options, batch)
    if data.note:
        result.warnings.append(data.note)
    return result


def export_reference(
    reference: str,
    options: ExportOptions,
    *,
    model_kwargs: dict[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    operator: tuple[str, dict[str, Any]] | None = None,
    scale: tuple[float, str] | None = None,
    weights: Path | None = None,
    leaf_modules: Sequence[type[nn.Module]] = (),
    seed: int = 0,
) -> ExportResult:
    """Build ``reference`` (scaled by ``scale = (factor, rule)``, rewritten with ``operator``), load
    ``weights`` when given (a state dict of the captured, rewritten model), export."""
    from ..graph import capture, rewrite_with_operator
    from ..models import DEFAULT_INPUT_SHAPE, build_model

    torch.manual_seed(seed)
    built = build_model(reference, model_kwargs)
    source: nn.Module = built.module
    shape = tuple(input_shape or built.input_shape or DEFAULT_INPUT_SHAPE)
    warnings: list[str] = []
    if scale is not None:
        from ..scaling import scale_model

        scaled = scale_model(built, scale[0], scale[1], input_shape, seed=seed, leaf_modules=leaf_modules)
        source, shape = scaled.module, tuple(scaled.input_shape)
        warnings += [f"scaling: {note}" for note in scaled.notes]
    module = capture(source, shape, leaf_modules=leaf_modules)
    rewritten = None
    if operator is not None:
        rewritten = rewrite_with_operator(module, operator[0], operator[1])
        if not rewritten.rewritten:
            warnings.append(
                f"no conv could take operator {operator[0]!r}; the model is exported with plain convs"
            )
    if weights is not None:
        load_weights(module, weights, "--weights")
    metadata = {
        "source": "model",
        "model": reference,
        "model_kwargs": dict(model_kwargs or {}),
        "operator": {
            "name": operator[0],
            "params": dict(operator[1]),
            "rewritten": len(rewritten.rewritten) if rewritten else 0,
        }
        if operator
        else None,
        "scale": {"factor": scale[0], "rule": scale[1]} if scale else None,
        "weights": str(weights) if weights is not None else f"random initialization (seed {seed})",
    }
    result = export_module(module, shape, metadata, options)
    result.warnings[:0] = warnings
    return result
