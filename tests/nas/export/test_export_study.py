"""A study's trial exported end to end through the CLI, read back with `nas inspect`, trial selection, and
the failure paths (exit 2, one line naming the trial)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from nas.cli import main
from nas.errors import NasError
from nas.export import select_trial
from nas.search.study import load_existing_study

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def exported(trained_study: Path, tmp_path_factory: pytest.TempPathFactory):
    """`nas export --study DIR --out best.pt --json` once for the module: (exit code, JSON, out path)."""
    out = tmp_path_factory.mktemp("export") / "best.pt"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            ["export", "--study", str(trained_study), "--out", str(out), "--json", "--min-run-time", "0.05"]
        )
    return code, json.loads(stdout.getvalue()), out


def test_study_export_end_to_end(exported, trained_study):
    code, data, out = exported
    assert code == 0 and data["passed"] is True
    assert data["out"] == str(out) and data["pt2"] == str(out.with_suffix(".pt2")) and "onnx" not in data
    assert out.is_file() and out.with_suffix(".pt2").is_file()
    assert data["max_abs_diff"] <= data["tolerance"] == pytest.approx(1e-4 * data["output_scale"])
    assert set(data["diffs"]) == {"pt", "pt2"} and set(data["diffs"]["pt"]) == {"random", "validation"}
    assert data["hidden_packages"] == []  # editable install: the project is simply not on the fresh path
    assert set(data["latency_ms"]) == {"exported", "uncollapsed"} and all(
        v > 0 for v in data["latency_ms"].values()
    )
    meta = data["metadata"]
    _, study = load_existing_study(trained_study)
    best = select_trial(trained_study)
    assert meta["trial"] == best.number and meta["space"] == "tiny" and meta["source"] == "study"
    assert meta["candidate"] == study.trials[best.number].user_attrs["candidate"]
    assert meta["metrics"]["accuracy"] == study.trials[best.number].values[0]
    assert meta["input_shape"] == [1, 8, 8] and meta["class_names"] == ["class_0", "class_1", "class_2"]
    assert meta["task"] == "classification" and meta["fold_bn"] is True and meta["folded_batchnorms"] == 10
    assert meta["candidate"]["scale"] == 2.0 and meta["metrics"]["architecture"]  # a scaled trial, rebuilt
    assert {"torch", "nas", "python", "optuna"} <= set(meta["versions"])


def test_text_report_says_what_the_exported_costs_count(exported, capsys):
    """The exported graph's flops exceed the study's when BatchNorm is folded (conv biases); the report says so and
    shows the MACs, which agree."""
    from nas.cli.export_cmd import _print

    _, data, _ = exported
    _print(data)
    text = " ".join(capsys.readouterr().out.split())
    meta = data["metadata"]
    costs = meta["costs"]
    assert f"flops {costs['flops']:,}" in text and f"macs {costs['macs']:,}" in text
    assert meta["fold_bn"] and meta["folded_batchnorms"] > 0
    assert "folding BatchNorm gives convs biases" in text


def test_export_runs_with_torch_alone(exported, trained_study):
    """The metadata is readable with torch alone and the file reproduces the trial's trained weights."""
    _, data, out = exported
    files = {"nas.json": ""}
    module = torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["nas.json"]) == data["metadata"]
    from nas.candidate import Candidate, build_candidate

    best = select_trial(trained_study)
    built = build_candidate(best.space, Candidate.from_dict(best.candidate), best.space.train.seed, (1, 8, 8))
    built.module.load_state_dict(torch.load(best.weights, weights_only=True))
    built.module.eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(module(x), built.module(x), atol=1e-5)
        program = torch.export.load(str(out.with_suffix(".pt2"))).module()
        assert torch.allclose(program(x), built.module(x), atol=1e-5)  # a batch of 4: the batch is dynamic


def test_inspect_reads_an_export_back(exported, capsys):
    _, data, out = exported
    assert main(["inspect", str(out), "--json"]) == 0
    read = json.loads(capsys.readouterr().out)
    assert read["metadata"] == data["metadata"] and read["input_shape"] == [1, 8, 8]
    assert {k: read[k] for k in ("flops", "macs", "acts", "params")} == data["metadata"]["costs"]
    assert main(["inspect", str(out), "--latency", "--batch-size", "2"]) == 0
    text = capsys.readouterr().out
    assert "exported graph" in text and "latency" in text and "trial" in text and "class_0" in text


def test_selection(trained_study):
    space, study = load_existing_study(trained_study)
    trials = study.get_trials()
    by_accuracy = max(trials, key=lambda t: (t.values[0], -t.number))
    assert select_trial(trained_study).number == by_accuracy.number  # Pareto rank 1 by the first objective
    assert select_trial(trained_study, best="accuracy").number == by_accuracy.number
    by_flops = min(trials, key=lambda t: (t.values[1], t.number))
    assert select_trial(trained_study, best="flops").number == by_flops.number
    assert select_trial(trained_study, trial=1).number == 1
    from nas.search.report import pareto_numbers

    front = sorted(pareto_numbers(study), key=lambda n: (-study.trials[n].values[0], n))
    assert [select_trial(trained_study, pareto_rank=k + 1).number for k in range(len(front))] == front
    with pytest.raises(
        NasError, match=f"--pareto-rank {len(front) + 1}: the Pareto front .* has {len(front)}"
    ):
        select_trial(trained_study, pareto_rank=len(front) + 1)
    with pytest.raises(NasError, match="--best 'speed': unknown metric"):
        select_trial(trained_study, best="speed")


def _fails(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nas export: error: ")
    return err


def test_unknown_trial(trained_study, tmp_path, capsys):
    err = _fails(
        ["export", "--study", str(trained_study), "--trial", "99", "--out", str(tmp_path / "m.pt")], capsys
    )
    assert "trial 99: no such trial" in err and "0..2" in err
    assert not (tmp_path / "m.pt").exists()


def test_missing_weights(study_copy, tmp_path, capsys):
    (study_copy / "trials" / "1" / "weights.pt").unlink()
    err = _fails(
        ["export", "--study", str(study_copy), "--trial", "1", "--out", str(tmp_path / "m.pt")], capsys
    )
    assert "trial 1:" in err and "weights.pt is missing" in err


@pytest.mark.parametrize(
    "state, attrs, expected",
    [
        (
            TrialState.FAIL,
            {"error": "TrainingDiverged: loss is nan"},
            "failed (TrainingDiverged: loss is nan)",
        ),
        (TrialState.PRUNED, {"pruned": True}, "was pruned"),
        (TrialState.COMPLETE, {"infeasible": True, "constraints": [1.5]}, "is infeasible"),
        (TrialState.COMPLETE, {"constraints": [0.2]}, "violates the space's constraints after training"),
    ],
)
def test_trials_that_cannot_be_exported(study_copy, add_trial, tmp_path, capsys, state, attrs, expected):
    number = add_trial(study_copy, state, **attrs)
    err = _fails(
        ["export", "--study", str(study_copy), "--trial", str(number), "--out", str(tmp_path / "m.pt")],
        capsys,
    )
    assert f"trial {number} of {study_copy} {expected}" in err


def test_argument_errors(trained_study, tmp_path, capsys):
    out = str(tmp_path / "m.pt")
    assert "either a MODEL reference or --study" in _fails(["export", "--out", out], capsys)
    assert "--op: only with a MODEL" in _fails(
        ["export", "--study", str(trained_study), "--op", "weighted", "--out", out], capsys
    )
    assert "--trial: only with --study" in _fails(
        ["export", "compact:ConvOps-S", "--trial", "1", "--out", out], capsys
    )
    assert "not a study directory" in _fails(["export", "--study", str(tmp_path), "--out", out], capsys)
    assert "give the TorchScript file's name" in _fails(
        ["export", "--study", str(trained_study), "--out", str(tmp_path / "m.pt2")], capsys
    )


def test_validation_inputs_follow_a_scaled_input_shape():
    from nas.export.sources import _at_input_shape

    batch = torch.rand(4, 1, 8, 8)
    assert _at_input_shape(batch, (1, 8, 8)) is batch
    assert _at_input_shape(batch, (1, 12, 12)).shape == (4, 1, 12, 12)
    assert _at_input_shape(batch, (3, 8, 8)) is None and _at_input_shape(None, (1, 8, 8)) is None
