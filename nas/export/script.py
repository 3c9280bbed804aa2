"""Writing the exported files: TorchScript (``.pt``), a ``torch.export`` program (``.pt2``) and ONNX (``.onnx``).

TorchScript is deprecated upstream (FutureWarning since torch 2.13) but it is what users load most widely, so
it is written, with its deprecation warnings silenced here and nowhere else. ``torch.jit.script`` is tried
first; when it cannot compile the graph (or the compiled module fails when called, as parametrized modules
do), ``torch.jit.trace`` is used and a warning says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import NasError

METADATA_FILE = "nas.json"
# Warnings that say nothing about the model being exported: TorchScript's deprecation, and its note about
# empty containers fx's GraphModule keeps as attributes.
QUIET_MESSAGES = (
    r"`torch\.jit\.\w+` is deprecated",
    r"The TorchScript type system doesn't support instance-level annotations",
)


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence TorchScript's deprecation notices (only those; other warnings pass)."""
    with warnings.catch_warnings():
        for message in QUIET_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        yield


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class Scripted:
    module: torch.jit.ScriptModule
    method: str  # "script" or "trace"
    warning: str | None = None


def to_torchscript(module: nn.Module, example: torch.Tensor) -> Scripted:
    """``torch.jit.script(module)``, falling back to ``torch.jit.trace(module, example)`` with a warning."""
    try:
        with quiet_torchscript():
            scripted = torch.jit.script(module)
        with torch.no_grad():
            scripted(example)  # parametrized modules compile under script but fail when called
        return Scripted(scripted, "script")
    except Exception as error:  # TorchScript raises RuntimeError, NotSupportedError, frontend errors...
        reason = f"{type(error).__name__}: {first_line(error)}"
    with quiet_torchscript(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            with torch.no_grad():
                traced = torch.jit.trace(module, example, check_trace=False)
        except Exception as error:
            raise NasError(
                f"the model can be neither scripted ({reason}) nor traced ({type(error).__name__}: "
                f"{first_line(error)})"
            ) from None
    tracer_notes = sum(issubclass(w.category, torch.jit.TracerWarning) for w in caught)
    warning = (
        f"torch.jit.script could not compile the model ({reason}); it was traced with torch.jit.trace instead, "
        "so control flow that depends on the input is fixed to the path the example input took"
    )
    if tracer_notes:
        warning += f" ({tracer_notes} tracer warnings)"
    return Scripted(traced, "trace", warning)


def save_torchscript(scripted: torch.jit.ScriptModule, path: Path, metadata_json: str) -> None:
    """Write ``path`` with the metadata as the extra file ``nas.json``."""
    with quiet_torchscript():
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: metadata_json})


def load_torchscript(path: Path, map_location: str = "cpu") -> tuple[torch.jit.ScriptModule, str | None]:
    """(module, the ``nas.json`` text or None). A file that is not TorchScript is a NasError."""
    files = {METADATA_FILE: ""}
    try:
        with quiet_torchscript():
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=files)
    except Exception as error:
        raise NasError(
            f"{path}: not a TorchScript file torch.jit.load can read ({first_line(error)})"
        ) from None
    text = files[METADATA_FILE]
    text = text.decode() if isinstance(text, bytes) else text
    return module, text or None


@dataclass
class Program:
    program: torch.export.ExportedProgram | None
    dynamic_batch: bool = False
    warning: str | None = None


def export_program(module: nn.Module, example: torch.Tensor) -> Program:
    """``torch.export.export`` with a dynamic batch dimension (a fixed one when that fails; None and a warning
    when the model cannot be exported at all)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        return Program(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), True)
    except Exception as error:
        dynamic_reason = first_line(error)
    try:
        program = torch.export.export(module, (example,))
    except Exception as error:
        return Program(
            None, False, f"torch.export could not export the model ({first_line(error)}); no .pt2 written"
        )
    return Program(
        program, False, f"the .pt2 program has a fixed batch size of {example.shape[0]} ({dynamic_reason})"
    )


def save_program(program: torch.export.ExportedProgram, path: Path, metadata_json: str) -> None:
    torch.export.save(program, str(path), extra_files={METADATA_FILE: metadata_json})


def save_onnx(program: torch.export.ExportedProgram, path: Path, metadata_json: str) -> None:
    """ONNX through the dynamo exporter (needs the ``onnx`` and ``onnxscript`` packages), one file, with the
    metadata as the model's ``nas.json`` metadata property."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter's dependency; a clear error before it fails deep inside)
    except ImportError as error:
        raise NasError(
            f"--onnx needs the onnx and onnxscript packages ({error.name} is missing): "
            "pip install onnx onnxscript"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(program, (), str(path), dynamo=True, external_data=False, verbose=False)
    except Exception as error:  # the exporter's own errors (an op without an ONNX translation...)
        raise NasError(
            f"--onnx: the ONNX exporter failed ({type(error).__name__}: {first_line(error)})"
        ) from None
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_FILE, metadata_json
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
