"""The fresh-process check: the project cannot be imported there, a wrong export fails with exit 1, a file that
does not load is reported; model references through the CLI (weights, scaling, ONNX)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nas.export.pipeline
import nas.export.verify
from nas.cli import main
from nas.export import ExportOptions, VerificationError, export_reference, verify_export
from nas.export.verify import search_paths
from nas.graph import capture, rewrite_with_operator
from nas.models import build_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:FutureWarning"),
]


def test_the_verification_environment_has_torch_but_not_the_project(tmp_path):
    probe = (
        "import importlib.util, json, sys; sys.path.extend(json.loads(sys.argv[1])); "
        "print(json.dumps([importlib.util.find_spec(n) is None for n in ('torch', 'nas', 'operators', 'search_spaces')]))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, json.dumps(search_paths())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [False, True, True, True]
    # while this process imports them, from the repository or an install
    assert all(__import__(name) for name in ("nas", "operators", "search_spaces"))


def test_a_project_installed_next_to_torch_is_hidden(tmp_path, monkeypatch):
    """With the project's directory on the fresh process's path (as a regular install would put it), the check
    hides its packages and says so, and the export still loads and matches."""
    root = str(Path(nas.export.__file__).resolve().parents[2])
    monkeypatch.setattr(nas.export.verify, "search_paths", lambda: [*_original_paths(), root])
    model = torch.nn.Conv2d(3, 2, 3).eval()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.pt"))
    check = verify_export(tmp_path / "m.pt", None, model, {"random": torch.randn(2, 3, 5, 5)})
    assert (
        check.hidden == ["nas", "operators", "search_spaces"] and check.passed and check.max_abs_diff == 0.0
    )


_original_paths = search_paths


def test_a_file_that_does_not_load_is_reported(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a TorchScript archive")
    with pytest.raises(VerificationError, match="do not load and run in a fresh process without the project"):
        verify_export(bad, None, torch.nn.Identity(), {"random": torch.randn(2, 3)})


def _perturbed(module, fold_bn=True):
    prepared = _original_prepare(module, fold_bn)
    with torch.no_grad():
        prepared.module.get_submodule("fc").bias.add_(1.0)  # the export no longer reproduces the model
    return prepared


_original_prepare = nas.export.pipeline.prepare_for_export


def test_an_export_that_does_not_reproduce_the_model_fails_with_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nas.export.pipeline, "prepare_for_export", _perturbed)
    out = tmp_path / "m.pt"
    assert main(["export", "compact:ConvOps-S", "--out", str(out), "--json", "--no-latency"]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["passed"] is False and data["max_abs_diff"] > data["tolerance"]
    assert 0.99 < data["diffs"]["pt"]["random"] < 1.01 and 0.99 < data["diffs"]["pt2"]["random"] < 1.01
    assert "does not reproduce the model" in captured.err and str(out) in captured.err


@pytest.mark.slow
def test_model_reference_with_weights_and_onnx(tmp_path, capsys):
    torch.manual_seed(3)
    built = build_model("compact:ConvOps-S")
    module = capture(built.module, built.input_shape)
    rewrite_with_operator(module, "weighted", {"density": 0.8})
    weights = tmp_path / "weights.pt"
    torch.save(module.state_dict(), weights)
    out = tmp_path / "w.pt"
    args = [
        "export",
        "compact:ConvOps-S",
        "--op",
        "weighted:density=0.8",
        "--weights",
        str(weights),
        "--onnx",
        "--out",
        str(out),
        "--json",
        "--min-run-time",
        "0.05",
        "--seed",
        "7",
    ]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and data["onnx"] == str(tmp_path / "w.onnx") and Path(data["onnx"]).is_file()
    assert data["metadata"]["weights"] == str(weights) and data["metadata"]["operator"]["name"] == "weighted"
    import onnx

    model = onnx.load(data["onnx"])
    assert json.loads({p.key: p.value for p in model.metadata_props}["nas.json"]) == data["metadata"]
    module.eval()
    x = torch.randn(2, *built.input_shape)
    with torch.no_grad():  # the trained weights, not the seed-7 initialization, are in the file
        assert torch.allclose(torch.jit.load(str(out))(x), module(x), atol=1e-5)


def test_weights_that_do_not_match_are_exit_2(tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    assert (
        main(["export", "compact:ConvOps-S", "--weights", str(weights), "--out", str(tmp_path / "m.pt")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas export: error: --weights:") and "does not match the model" in err


def test_scaled_model_reference(tmp_path):
    options = ExportOptions(out=tmp_path / "s.pt", pt2=False, verify=False, latency=None)
    base = export_reference("compact:ConvOps-S", options)
    scaled = export_reference(
        "compact:ConvOps-S", options, scale=(2.0, "dWr"), operator=("conv_lora", {"rank": 2})
    )
    assert scaled.metadata["scale"] == {"factor": 2.0, "rule": "dWr"}
    assert 1.8 < scaled.metadata["costs"]["flops"] / base.metadata["costs"]["flops"] < 2.2
    assert scaled.metadata["collapsed_operators"] == scaled.metadata["operator"]["rewritten"] > 0
