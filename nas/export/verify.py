"""Verification of an export in a fresh Python process in which this project cannot be imported (only torch).

The parent saves the inputs and the outputs of the unexported model (eval mode) to a ``.pt`` file of plain
tensors; a standalone script, run with ``python -I -S`` (isolated: no PYTHONPATH, no user site, no ``.pth``
files, so no editable install) from a temporary working directory with only the directories torch needs on
``sys.path``, asserts that ``nas``, ``operators`` and ``search_spaces`` cannot be imported, loads ``model.pt``
with ``torch.jit.load`` and ``model.pt2`` with ``torch.export.load``, runs them and reports the largest
absolute difference per file and input. Where the project is installed next to torch (a regular install),
its packages are hidden from the script by an import hook, as on a machine without them, and the report
says so.

The export passes when that difference is at most ``RELATIVE_TOLERANCE`` times the output scale (the largest
absolute output of the unexported model).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

RELATIVE_TOLERANCE = 1e-4
PROJECT_PACKAGES = ("nas", "operators", "search_spaces")

SCRIPT = r"""
import importlib.abc, importlib.util, json, math, sys, warnings

config = json.loads(open(sys.argv[1]).read())
sys.path.extend(config["paths"])
BLOCKED = tuple(config["blocked"])
hidden = [name for name in BLOCKED if importlib.util.find_spec(name) is not None]


class HideProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


if hidden:  # installed next to torch: hide it, as on a machine without the project
    sys.meta_path.insert(0, HideProject())
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit("the project's package %r is importable in the verification process" % name)
warnings.filterwarnings("ignore")
import torch


def flat(output):
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    return [tensor for item in output for tensor in flat(item)]


def run(model, x, batch):
    if batch is None:
        return flat(model(x))
    pieces = [flat(model(chunk)) for chunk in torch.split(x, batch)]
    return [torch.cat(parts) for parts in zip(*pieces)]


reference = torch.load(config["reference"], weights_only=True)
files = {"nas.json": ""}
models = {"pt": (torch.jit.load(config["pt"], map_location="cpu", _extra_files=files).eval(), None)}
if config.get("pt2"):
    models["pt2"] = (torch.export.load(config["pt2"]).module(), config.get("pt2_batch"))
report = {"hidden": hidden, "metadata": bool(files["nas.json"]), "torch": torch.__version__, "diffs": {}}
with torch.no_grad():
    for kind, (model, batch) in models.items():
        diffs = {}
        for case, x in reference["inputs"].items():
            got, expected = run(model, x, batch), reference["outputs"][case]
            if len(got) != len(expected) or any(a.shape != b.shape for a, b in zip(got, expected)):
                diffs[case] = "shape: got %s, expected %s" % ([list(a.shape) for a in got], [list(b.shape) for b in expected])
                continue
            diff = max(float((a.double() - b.double()).abs().max()) for a, b in zip(got, expected))
            diffs[case] = diff if math.isfinite(diff) else "not finite"
        report["diffs"][kind] = diffs
report["modules"] = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
print(json.dumps(report))
"""


BOOTSTRAP = r"""
import importlib.abc, importlib.util, json, runpy, sys

config = json.loads(open(sys.argv[1]).read())
sys.path.extend(config["paths"])
BLOCKED = tuple(config["blocked"])


class HideProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


if any(importlib.util.find_spec(name) is not None for name in BLOCKED):
    sys.meta_path.insert(0, HideProject())
sys.argv = [config["script"], *config["args"]]
runpy.run_path(config["script"], run_name="__main__")
"""


def run_without_project(
    script: Path, args: list[str], cwd: Path, timeout: float = 300.0
) -> subprocess.CompletedProcess:
    """Run a Python file in the fresh process the verification uses (``python -I -S``, torch's directories on
    the path, this project's packages not importable) with ``args`` and ``cwd``; its output is captured."""
    with tempfile.TemporaryDirectory(prefix="nas-isolated-") as folder:
        config = Path(folder) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "paths": search_paths(),
                    "blocked": list(PROJECT_PACKAGES),
                    "script": str(Path(script).resolve()),
                    "args": list(args),
                }
            )
        )
        (Path(folder) / "bootstrap.py").write_text(BOOTSTRAP)
        command = [sys.executable, "-I", "-S", str(Path(folder) / "bootstrap.py"), str(config)]
        return subprocess.run(
            command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=timeout
        )


class VerificationError(RuntimeError):
    """The exported files could not be loaded or run without the project."""


@dataclass
class Verification:
    max_abs_diff: float
    output_scale: float
    tolerance: float
    diffs: dict[str, dict[str, Any]]  # file kind ("pt", "pt2") -> input case -> max |diff| (or why not)
    hidden: list[str] = field(default_factory=list)
    metadata_readable: bool = True

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_abs_diff) and self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return dict(
            max_abs_diff=self.max_abs_diff,
            output_scale=self.output_scale,
            tolerance=self.tolerance,
            passed=self.passed,
            diffs=self.diffs,
            hidden_packages=self.hidden,
        )


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """Tensors of a model output (a tensor, or nested tuples / lists / dicts of them), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [tensor for item in output for tensor in flatten_outputs(item)]
    raise VerificationError(
        f"the model returned {type(output).__name__}; only tensors (or containers) compare"
    )


def search_paths() -> list[str]:
    """This interpreter's import directories that hold none of the project's packages (torch's among them)."""
    paths = []
    for entry in sys.path:
        path = Path(entry) if entry else None
        if path is None or not path.is_dir() or any((path / name).exists() for name in PROJECT_PACKAGES):
            continue
        paths.append(str(path))
    torch_root = str(Path(torch.__file__).resolve().parent.parent)
    return paths if torch_root in paths else [*paths, torch_root]


def _environment() -> dict[str, str]:
    """This process's environment without Python's own variables (``-I`` ignores them too)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


def reference_outputs(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """The unexported model's outputs in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return {case: [t.detach().cpu() for t in flatten_outputs(model(x))] for case, x in inputs.items()}
    finally:
        model.train(was_training)


def verify_export(
    pt_path: Path,
    pt2_path: Path | None,
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    *,
    pt2_batch: int | None = None,
    timeout: float = 900.0,
) -> Verification:
    """Load and run the exported files in a fresh process without the project; compare with ``model``."""
    outputs = reference_outputs(model, inputs)
    scale = max((float(t.abs().max()) for ts in outputs.values() for t in ts if t.numel()), default=0.0)
    with tempfile.TemporaryDirectory(prefix="nas-verify-") as folder:
        work = Path(folder)
        torch.save(
            {"inputs": {k: v.detach().cpu() for k, v in inputs.items()}, "outputs": outputs},
            work / "reference.pt",
        )
        config = {
            "paths": search_paths(),
            "blocked": list(PROJECT_PACKAGES),
            "reference": str(work / "reference.pt"),
            "pt": str(Path(pt_path).resolve()),
            "pt2": str(Path(pt2_path).resolve()) if pt2_path else None,
            "pt2_batch": pt2_batch,
        }
        (work / "config.json").write_text(json.dumps(config))
        (work / "verify_export.py").write_text(SCRIPT)
        command = [sys.executable, "-I", "-S", str(work / "verify_export.py"), str(work / "config.json")]
        try:
            done = subprocess.run(
                command, cwd=work, env=_environment(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise VerificationError(f"the verification process did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise VerificationError(
            "the exported files do not load and run in a fresh process without the project: "
            + (tail[-1] if tail else f"exit code {done.returncode}")
        )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["modules"]:
        raise VerificationError(f"loading the export imported the project's modules {report['modules']}")
    numbers = [
        d if isinstance(d, float) else math.inf for cases in report["diffs"].values() for d in cases.values()
    ]
    return Verification(
        max(numbers, default=math.inf),
        scale,
        RELATIVE_TOLERANCE * scale,
        report["diffs"],
        report["hidden"],
        report["metadata"],
    )
