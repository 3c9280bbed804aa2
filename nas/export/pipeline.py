"""``export_module``: prepare -> script -> write ``.pt`` (+ ``.pt2``, ``.onnx``) -> verify in a fresh process ->
measure latency. ``export_trial`` and ``export_reference`` (``sources.py``) build the model and call it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import NasError
from ..latency import LatencySettings, measure_latency
from .costs import count_exported
from .metadata import FORMAT, package_versions, to_json
from .prepare import prepare_for_export
from .script import (
    export_program,
    load_torchscript,
    save_onnx,
    save_program,
    save_torchscript,
    to_torchscript,
)
from .verify import Verification, verify_export

EXAMPLE_BATCH = 2  # the example input's batch (and the .pt2's when its batch cannot be dynamic)


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    fold_bn: bool = True
    pt2: bool = True
    onnx: bool = False
    verify: bool = True  # the fresh-process check (tests and benchmarks may skip it)
    latency: LatencySettings | None = field(default_factory=LatencySettings)  # None: not measured
    seed: int = 0  # of the random verification inputs


@dataclass
class ExportResult:
    out: Path
    pt2: Path | None
    onnx: Path | None
    metadata: dict[str, Any]
    method: str  # "script" or "trace"
    folded: list[str]
    verification: Verification | None = None
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)  # "exported" / "uncollapsed" -> Latency
    warnings: list[str] = field(default_factory=list)
    onnx_asked: bool = False

    @property
    def passed(self) -> bool:
        return self.verification is None or self.verification.passed

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"out": str(self.out), "pt2": str(self.pt2) if self.pt2 else None}
        if self.onnx_asked:
            data["onnx"] = str(self.onnx) if self.onnx else None
        if self.verification is not None:
            data.update(self.verification.as_dict())
        data["metadata"] = self.metadata
        if self.latency:
            data["latency_ms"] = {kind: values["latency_ms"] for kind, values in self.latency.items()}
            data["latency"] = self.latency
        data["warnings"] = list(self.warnings)
        return data


def sibling(out: Path, suffix: str) -> Path:
    """``model.pt`` -> ``model.pt2`` / ``model.onnx``."""
    return out.with_suffix(suffix) if out.suffix else out.with_name(out.name + suffix)


def check_out(out: Path) -> Path:
    out = Path(out)
    if out.suffix in (".pt2", ".onnx"):
        raise NasError(
            f"--out {out}: give the TorchScript file's name (e.g. model.pt); the .pt2 and .onnx go beside it"
        )
    if out.is_dir():
        raise NasError(f"--out {out} is a directory; give a file name (e.g. {out / 'model.pt'})")
    return out


def _latencies(out: Path, module: nn.Module, input_shape: tuple[int, ...], settings: LatencySettings) -> dict:
    exported, _ = load_torchscript(out)
    return {
        "exported": measure_latency(exported, input_shape, settings).as_dict(),
        "uncollapsed": measure_latency(copy.deepcopy(module), input_shape, settings).as_dict(),
    }


def export_module(
    module: nn.Module,
    input_shape: tuple[int, ...],
    metadata: dict[str, Any],
    options: ExportOptions,
    validation: torch.Tensor | None = None,
) -> ExportResult:
    """Export ``module`` (eval mode is used; operators collapse; BatchNorm folds when ``options.fold_bn``)."""
    out = check_out(options.out)
    input_shape = tuple(int(s) for s in input_shape)
    module.eval()
    prepared = prepare_for_export(module, options.fold_bn)
    example = torch.randn(EXAMPLE_BATCH, *input_shape, generator=torch.Generator().manual_seed(options.seed))
    scripted = to_torchscript(prepared.module, example)
    warnings = [scripted.warning] if scripted.warning else []
    metadata = {
        "format": FORMAT,
        **metadata,
        "input_shape": list(input_shape),
        "fold_bn": options.fold_bn,
        "folded_batchnorms": len(prepared.folded),
        "collapsed_operators": prepared.collapsed,
        "materialized_parametrizations": prepared.materialized,
        "torchscript": scripted.method,
        "costs": {
            k: v for k, v in count_exported(scripted.module, input_shape).items() if v or k != "unknown_ops"
        },
        "versions": package_versions(),
    }
    text = to_json(metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_torchscript(scripted.module, out, text)
    result = ExportResult(
        out,
        None,
        None,
        metadata,
        scripted.method,
        prepared.folded,
        warnings=warnings,
        onnx_asked=options.onnx,
    )
    program = None
    if options.pt2 or options.onnx:
        program = export_program(prepared.module, example)
        if program.warning:
            warnings.append(program.warning)
    if options.pt2 and program.program is not None:
        result.pt2 = sibling(out, ".pt2")
        save_program(program.program, result.pt2, text)
    elif options.pt2 and sibling(out, ".pt2").exists():  # never leave an older program beside the new file
        sibling(out, ".pt2").unlink()
        warnings.append(f"removed the older {sibling(out, '.pt2')}, which belonged to another export")
    if options.onnx:
        if program.program is None:
            raise NasError(f"--onnx: there is no torch.export program to convert: {program.warning}")
        result.onnx = sibling(out, ".onnx")
        save_onnx(program.program, result.onnx, text)
    if options.verify:
        inputs = {"random": example}
        if validation is not None and len(validation) >= EXAMPLE_BATCH:
            inputs["validation"] = validation[: len(validation) - len(validation) % EXAMPLE_BATCH]
        pt2_batch = None if program is None or program.dynamic_batch else EXAMPLE_BATCH
        result.verification = verify_export(out, result.pt2, module, inputs, pt2_batch=pt2_batch)
    if options.latency is not None:
        result.latency = _latencies(out, module, input_shape, options.latency)
    return result
