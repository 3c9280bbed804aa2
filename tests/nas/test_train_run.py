"""`nas train`: a candidate's round trip, scaling to a flops target, resume after kill -9, and an export whose
preprocessing, applied by the README's snippet in a fresh torch-only process to an image file of a real digit,
reproduces the model's prediction."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nas.candidate import Candidate, OperatorAssignment, build_candidate
from nas.cli import main
from nas.errors import NasError
from nas.run import flops_of, plan_run, read_candidate, run_space, scaled
from nas.scaling.target import factor_for_flops
from nas.space import load_space
from tests.tiny_space import tiny_space

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
ROOT = Path(__file__).resolve().parents[2]
WEIGHTED = {"scale": 1.0, "operators": {"stage1": {"name": "weighted", "params": {"density": 0.8}}}}
DIGITS = textwrap.dedent(
    """\
    name: digits-tiny
    model:
      ref: compact:ConvOps-S
      kwargs: {widths: [8, 8, 8]}
      input: [1, 16, 16]
    data: {name: digits}
    train: {epochs: 1, batch_size: 64, lr: 0.01, device: cpu}
    operators:
      targets: {min_kernel_size: 3}
      choices:
        conv: {}
        weighted: {density: {low: 0.6, high: 1.4}}
    scaling: {rule: dWr, factor: [1]}
    objectives: [accuracy, {flops: minimize}]
    constraints: {flops: {max: 1.0e5}}
    """
)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space(epochs=1))
    return path


def write_candidate(folder: Path, data: dict) -> Path:
    path = folder / "candidate.json"
    path.write_text(json.dumps(data))
    return path


# -- the candidate --------------------------------------------------------------------------------------------
def test_candidate_round_trip_rebuilds_the_same_model(tiny: Path, tmp_path: Path):
    """A candidate survives JSON, and a run's candidate.json, trained again with `--candidate`, is the same model:
    same scale (the trial's times the factor), same operators, same parameters and costs."""
    candidate = Candidate(2.0, {"stage1": OperatorAssignment("weighted", {"density": 0.8})})
    assert Candidate.from_dict(json.loads(json.dumps(candidate.to_dict()))) == candidate
    assert read_candidate(candidate.to_dict(), "x") == candidate

    space = run_space(load_space(str(tiny)).raw)
    request = plan_run(space, candidate, {"candidate": "c"}, (1, 8, 8), factor=1.5)
    assert (
        request.candidate.scale == pytest.approx(3.0) and request.candidate.operators == candidate.operators
    )
    written = write_candidate(tmp_path, request.candidate.to_dict())
    again = plan_run(
        space, read_candidate(json.loads(written.read_text()), "x"), {"candidate": "c"}, (1, 8, 8)
    )
    assert again.candidate == request.candidate
    first = build_candidate(space, request.candidate, 0, (1, 8, 8)).module.state_dict()
    second = build_candidate(space, again.candidate, 0, (1, 8, 8)).module.state_dict()
    assert {k: v.shape for k, v in first.items()} == {k: v.shape for k, v in second.items()}
    assert all(torch.equal(first[k], second[k]) for k in first)  # the same seed: the same initialization


@pytest.mark.parametrize(
    "data,message",
    [
        ({"scale": 1, "operators": {"stage1": {"name": "nope"}}}, "unknown operator 'nope'"),
        ({"scale": 1, "operators": {"stage1": {"name": "weighted", "params": {"bogus": 1}}}}, "no parameter"),
        ({"scale": -2, "operators": {}}, "scale must be a positive number"),
        ({"scale": 1, "operators": {"stage9": {"name": "weighted"}}}, "'stage9' is not a conv group"),
    ],
)
def test_a_bad_candidate_is_one_line_and_exit_2(tiny: Path, tmp_path: Path, data, message):
    path = write_candidate(tmp_path, data)
    code, _, err = cli("train", "--space", str(tiny), "--candidate", str(path), "--out", str(tmp_path / "r"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


# -- scaling ---------------------------------------------------------------------------------------------------
def test_factor_for_flops_picks_the_closest_step():
    """Flops as a step function of the factor (rounding): the closest step wins, not the first one above."""
    fit = factor_for_flops(lambda f: int(1000 * round(f * 10) / 10), 2345)
    assert fit.flops == 2300 and fit.ratio == pytest.approx(2300 / 2345)
    fit = factor_for_flops(lambda f: int(1000 * round(f * 10) / 10), 2380)
    assert fit.flops == 2400
    with pytest.raises(NasError):
        factor_for_flops(lambda f: 1, -5)


def test_scaling_composes_and_meets_a_flops_target(tiny: Path):
    """A trial at scale s trained with factor f is the base model at scale s*f; --flops finds the factor whose
    rounded model's flops are closest to the target, among the steps that bracket it."""
    space = run_space(load_space(str(tiny)).raw)
    base = Candidate(2.0, {"stage1": OperatorAssignment("weighted", {"density": 0.8})})
    composed = scaled(base, 3.0)
    assert composed.scale == 6.0
    assert flops_of(space, composed, (1, 8, 8)) == flops_of(space, Candidate(6.0, base.operators), (1, 8, 8))

    target = 4.2 * flops_of(space, base, (1, 8, 8))
    request = plan_run(space, base, {"candidate": "c"}, (1, 8, 8), flops=target)
    achieved, factor = request.record["flops"], request.record["factor"]
    assert achieved == flops_of(space, request.candidate, (1, 8, 8))
    assert request.candidate.scale == pytest.approx(2.0 * factor)
    fit = _refit(space, base, target)
    below = max((f for f in fit.evaluations.values() if f <= target), default=None)
    above = min((f for f in fit.evaluations.values() if f >= target), default=None)
    assert below is not None and above is not None  # the target is bracketed by evaluated models
    assert achieved in (below, above)
    assert abs(math.log(achieved / target)) == min(
        abs(math.log(below / target)), abs(math.log(above / target))
    )
    assert abs(achieved / target - 1) < 0.25  # 8-channel widths round in steps of 8: coarse, but close


def _refit(space, base, target):
    from nas.run import fit_flops

    return fit_flops(space, base, target, (1, 8, 8))


def test_train_cli_scales_to_flops_and_reports_it(tiny: Path, tmp_path: Path):
    path = write_candidate(tmp_path, WEIGHTED)
    out = tmp_path / "run"
    code, stdout, err = cli(
        "train",
        "--space",
        str(tiny),
        "--candidate",
        str(path),
        "--flops",
        "500K",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, err
    data = json.loads(stdout)
    assert data["flops_target"] == 500000.0 and data["state"] == "done"
    assert data["metrics"]["flops"] == data["flops"] and abs(data["flops"] / 500000 - 1) < 0.1
    assert json.loads((out / "candidate.json").read_text())["scale"] == pytest.approx(data["factor"])
    assert set(json.loads((out / "epochs.json").read_text())) == {"1"}
    assert (out / "weights.pt").is_file() and not (out / "checkpoint.pt").exists()
    assert "latency_ms" in data["metrics"] and "constraints" not in (out / "space.yaml").read_text()
    code, stdout, _ = cli("report", "--run", str(out))
    assert code == 0 and "validation per epoch" in stdout and "flops target 500.00K" in stdout


# -- resume after kill -9 ---------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_run_resumes_from_its_last_epoch(tmp_path: Path):
    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space(epochs=1, samples=400))
    candidate = write_candidate(tmp_path, WEIGHTED)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "nas", "train", "--space", str(space), "--candidate", str(candidate)]
    command += ["--epochs", "12", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        log = out / "log.txt"
        if log.exists() and "epoch 2/" in log.read_text():  # logged after the epoch's checkpoint is saved
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "run.json").read_text())["state"] == "running"
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert 2 <= saved < 12 and not (out / "weights.pt").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    log = (out / "log.txt").read_text()
    resumed = int(re.search(r"resumed from the checkpoint of epoch (\d+)", log).group(1))
    assert resumed >= saved and "epoch 1/12" in log  # the log keeps the killed attempt's lines
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == resumed
    assert sorted(map(int, json.loads((out / "epochs.json").read_text()))) == list(range(1, 13))
    assert (
        json.loads((out / "run.json").read_text())["state"] == "done" and not (out / "checkpoint.pt").exists()
    )

    # the same request, never interrupted, ends in the same place: nothing was lost or repeated
    whole = tmp_path / "whole"
    code, _, err = cli(
        "train",
        "--space",
        str(space),
        "--candidate",
        str(candidate),
        "--epochs",
        "12",
        "--out",
        str(whole),
        "--quiet",
    )
    assert code == 0, err
    expected = json.loads((whole / "metrics.json").read_text())
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert metrics["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4)

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already trained" in again.stdout
    other = subprocess.run(
        [*command[:-4], "--epochs", "5", "--out", str(out)], capture_output=True, text=True
    )
    assert other.returncode == 2 and "holds another run" in other.stderr and "train.epochs" in other.stderr


# -- export with its preprocessing ------------------------------------------------------------------------------
def readme_snippet() -> str:
    """The README's prediction snippet (the python block after the ``predict.py`` marker)."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index("<!-- predict.py -->") :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_exported_preprocessing_predicts_a_digit_image_in_a_torch_only_process(tmp_path: Path):
    """`nas train` -> `nas export --run` -> the README's snippet, run where nas cannot be imported, on a PNG of a
    real validation digit: the class and probability the model gives the dataset's own tensor."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from nas.data import split_indices
    from nas.export.verify import run_without_project

    (tmp_path / "digits.yaml").write_text(DIGITS)
    candidate = write_candidate(tmp_path, WEIGHTED)
    out = tmp_path / "run"
    code, _, err = cli(
        "train",
        "--space",
        str(tmp_path / "digits.yaml"),
        "--candidate",
        str(candidate),
        "--factor",
        "2",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, err  # x2 exceeds the search's flops constraint: a run drops it
    code, stdout, err = cli(
        "export", "--run", str(out), "--out", str(tmp_path / "model.pt"), "--json", "--no-latency"
    )
    assert code == 0, err
    meta = json.loads(stdout)["metadata"]
    pre = meta["preprocessing"]
    assert meta["source"] == "run" and meta["task"] == "classification" and pre["output"] == "logits"
    assert pre["color"] == "grayscale" and pre["resize"]["size"] == meta["input_shape"][1:]
    assert (
        pre["normalize"]["mean"][0] == pytest.approx(0.3055, abs=1e-3) and len(pre["normalize"]["std"]) == 1
    )
    assert meta["class_names"] == [str(d) for d in range(10)] and meta["scaling"]["factor"] == 2.0

    images, labels = load_digits(return_X_y=True)
    _, val_index = split_indices(len(labels), 0.2, 0)
    work = tmp_path / "user"
    work.mkdir()
    (work / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes())
    (work / "predict.py").write_text(readme_snippet())
    model = torch.jit.load(str(work / "model.pt"))
    from nas.data import DataConfig, load_data

    _, val, _ = load_data(DataConfig("digits"), tuple(meta["input_shape"]))
    for k in (0, 1):
        raw = images[int(val_index[k])].reshape(8, 8)  # 0..16, the 8x8 digit as scikit-learn ships it
        Image.fromarray((raw * 255 / 16).round().astype("uint8"), mode="L").save(work / "digit.png")
        done = run_without_project(work / "predict.py", [], cwd=work)
        assert done.returncode == 0, done.stderr
        name, probability = done.stdout.split()
        with torch.no_grad():
            expected = model(val[k][0][None]).softmax(1)[0]
        assert name == str(int(expected.argmax()))
        assert float(probability) == pytest.approx(float(expected.max()), abs=2e-3)


def test_denoising_preprocessing_says_the_model_returns_the_clean_image():
    from nas.data import DataConfig, load_data
    from nas.export.metadata import preprocessing_metadata

    _, _, info = load_data(DataConfig("denoise", options={"max_patches": 8}), (1, 40, 40))
    pre = preprocessing_metadata(info, (1, 40, 40))
    assert pre["output"] == "clean image" and pre["value_range"] == [0.0, 1.0]
    assert pre["resize"] is None and pre["normalize"] is None and "25/255" in " ".join(pre["notes"])
