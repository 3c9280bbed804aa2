"""``nas scale`` as a user runs it, and the scaled-model file it writes."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from nas.cli import main
from nas.errors import NasError
from nas.models import build_model
from nas.scaling import load_scaled, read_scaled, scale_model


def run_json(capsys, *argv):
    assert main(["scale", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_regnety_4gf_example(capsys):
    """Plumbing: the README's example reports what ``scale_model`` gives for the same arguments (the numbers
    themselves, 15,608,249,240 flops and the rest, are checked once in test_scaling_parametric.py)."""
    data = run_json(capsys, "regnet:RegNetY-4.0GF", "--factor", "4", "--rule", "dWr")
    assert (data["factor"], data["rule"], data["method"]) == (4.0, "dWr", "parametric")
    with torch.device("meta"):
        scaled = scale_model(build_model("regnet:RegNetY-4.0GF"), 4, "dWr", materialize=False)
    after, costs = scaled.after, scaled.costs()
    assert (data["depths"], data["widths"], data["group_widths"]) == (
        list(after.depths),
        list(after.widths),
        list(after.group_widths),
    )
    assert (data["resolution"], data["test_resolution"]) == (after.resolution, after.test_resolution)
    assert (data["before"], data["after"]) == (costs["before"], costs["after"])
    assert data["ratios"] == pytest.approx(costs["ratios"]) and "output_shape" not in data


def test_table_output(capsys):
    assert main(["scale", "resnet:ResNet-20-cifar", "--factor", "2", "--rule", "d"]) == 0
    out = capsys.readouterr().out
    assert "depths" in out and "[3, 3, 3] -> [6, 6, 6]" in out and "ratio" in out


def test_check_and_out_round_trip(capsys, tmp_path):
    path = tmp_path / "scaled.yaml"
    argv = ["torchvision.models:resnet18", "--factor", "2", "--input", "3,32,32", "--arg", "num_classes=5"]
    data = run_json(capsys, *argv, "--check", "--out", str(path))
    assert data["output_shape"] == [1, 5] and data["method"] == "graph" and data["out"] == str(path)
    document = read_scaled(path)
    assert document["base"] == {
        "model": "torchvision.models:resnet18",
        "args": {"num_classes": 5},
        "input": [3, 32, 32],
        "leaf": [],
    }
    assert document["result"]["architecture"]["widths"] == data["widths"]
    built = load_scaled(path)
    assert list(built.input_shape) == data["input_shape"]
    from nas.cost import count
    from nas.graph import capture

    totals = count(capture(built.module, built.input_shape)).totals()
    assert {key: totals[key] for key in data["after"]} == data["after"]  # rebuilt deterministically


def test_a_file_whose_architecture_drifted_is_refused(tmp_path, capsys):
    path = tmp_path / "scaled.yaml"
    run_json(capsys, "resnet:ResNet-20-cifar", "--factor", "2", "--out", str(path))
    document = yaml.safe_load(path.read_text())
    document["result"]["architecture"]["widths"] = [1, 2, 3]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(NasError, match="rebuilding gives widths"):
        load_scaled(path)
    document["scaling"]["speed"] = "fast"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(NasError, match="unknown key scaling.speed"):
        read_scaled(path)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["resnet:ResNet-20-cifar", "--factor", "2", "--rule", "dx"], "scaling rule 'dx'"),
        (["resnet:ResNet-20-cifar", "--factor", "-1"], "--factor"),
        (
            ["torchvision.models:resnet18", "--factor", "2", "--method", "parametric"],
            "parametric scaling needs",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["scale", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
