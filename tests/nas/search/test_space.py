"""Space files: validation errors name the file, key and line; overrides; built-in spaces."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nas.space import SpaceError, builtin_spaces, load_space

MINIMAL = """\
name: tiny
model:
  ref: compact:ConvOps-S
  input: [1, 8, 8]
data:
  name: synthetic
  options: {num_samples: 64, num_classes: 3, channels: 1, size: 8}
train:
  epochs: 1
operators:
  choices:
    conv: {}
    weighted: {density: {low: 0.6, high: 1.4}}
objectives: [accuracy, {flops: minimize}]
"""


def write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_minimal_space_and_defaults(tmp_path):
    space = load_space(write(tmp_path, MINIMAL))
    assert space.name == "tiny" and space.model.input == (1, 8, 8)
    assert [o.metric for o in space.objectives] == ["accuracy", "flops"]
    assert space.directions == ["maximize", "minimize"]
    weighted = space.operators.choices[1]
    assert weighted.name == "weighted" and weighted.params["density"].kind == "range"
    assert space.search.sampler == "tpe" and space.storage is None


def test_overrides(tmp_path):
    space = load_space(
        write(tmp_path, MINIMAL), ["train.epochs=3", "search.trials=7", "objectives.0={metric: loss}"]
    )
    assert space.train.epochs == 3 and space.search.trials == 7 and space.objectives[0].metric == "loss"


@pytest.mark.parametrize(
    "change,needle",
    [
        (
            ("train:\n  epochs: 1", "train:\n  epochs: one"),
            r"space.yaml:9: train.epochs: expected an integer, got 'one'",
        ),
        (
            ("train:\n  epochs: 1", "train:\n  epochs: 1\n  colour: red"),
            r"space.yaml:10: train.colour: unknown key",
        ),
        (("train:\n  epochs: 1", "train:\n  epochs: 0"), r"train.epochs: must be >= 1"),
        (
            ("weighted: {density: {low: 0.6, high: 1.4}}", "weighted: {density: {low: 0.1, high: 1.4}}"),
            r"operators.choices.weighted.density: density must be in \[0.5, 1.5\]",
        ),
        (("weighted: {density", "weighted: {sharpness"), r"operator 'weighted' has no parameter 'sharpness'"),
        (
            ("    weighted:", "    warped:"),
            r"operators.choices.warped: unknown operator 'warped' \(known: conv",
        ),
        (
            ("objectives: [accuracy", "objectives: [accurracy"),
            r"objectives.0.metric: unknown metric 'accurracy'",
        ),
        (
            ("name: tiny", "name: tiny\nsearch: {sampler: annealing}"),
            r"search.sampler: expected one of 'tpe'",
        ),
        (("ref: compact:ConvOps-S", "ref: compact"), r"model.ref: expected FAMILY:CONFIG"),
    ],
)
def test_errors_name_file_key_and_line(tmp_path, change, needle):
    old, new = change
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(SpaceError, match=needle):
        load_space(path)


def test_bad_override():
    with pytest.raises(SpaceError, match="expected KEY.PATH=VALUE"):
        load_space("convops.yaml", ["train.epochs"])
    with pytest.raises(SpaceError, match="objectives.9: no such list item"):
        load_space("convops.yaml", ["objectives.9=accuracy"])


def test_pruner_needs_single_objective(tmp_path):
    path = write(tmp_path, MINIMAL + "search: {pruner: median}\n")
    with pytest.raises(SpaceError, match="search.pruner: pruning needs a single-objective study"):
        load_space(path)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpaceError, match=r"space.yaml:3: invalid YAML"):
        load_space(write(tmp_path, "name: x\nmodel: [unclosed\n"))
    with pytest.raises(SpaceError, match="no such file and no built-in space.*convops.yaml"):
        load_space("does_not_exist.yaml")


def test_builtin_spaces_load_by_name():
    assert {"convops.yaml", "dncnn_denoise.yaml", "cifar100_vgg.yaml"} <= set(builtin_spaces())
    for name in builtin_spaces():
        assert load_space(name).name


def test_validate_cli_exit_codes(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "nas", "validate", write(tmp_path, MINIMAL)], capture_output=True, text=True
    )
    assert good.returncode == 0 and "OK" in good.stdout and "stage1" in good.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "nas", "validate", write(tmp_path, MINIMAL.replace("epochs: 1", "epochs: x"))],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "train.epochs" in bad.stderr
