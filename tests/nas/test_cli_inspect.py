"""``nas inspect`` and ``nas ops`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nas.cli import main

pytest.importorskip("torchvision")


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _library_totals(model, input_shape) -> dict[str, int]:
    from nas.cost import count
    from nas.graph import capture

    return count(capture(model, input_shape)).totals()


def test_inspect_json_keys_and_values(capsys):
    """Plumbing: the command reports the counter's numbers for the model it was named (the numbers themselves
    are checked against pycls in tests/nas/test_zoo.py)."""
    import torchvision

    data = run_json(capsys, "inspect", "torchvision.models:resnet50")
    expected = _library_totals(torchvision.models.resnet50(), (3, 224, 224))
    assert {key: data[key] for key in ("params", "flops", "macs", "acts")} == {
        key: expected[key] for key in ("params", "flops", "macs", "acts")
    }
    assert data["unknown_ops"] == {}
    first = data["convs"][0]
    assert first["name"] == "conv1" and first["kernel_size"] == [7, 7] and first["stride"] == [2, 2]
    assert set(first) >= {
        "name",
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "groups",
        "flops",
        "acts",
    }
    assert sum(c["flops"] for c in data["convs"]) < data["flops"]  # the fc layer is counted too


def test_inspect_model_args_and_input(capsys):
    data = run_json(
        capsys, "inspect", "torchvision.models:resnet18", "--arg", "num_classes=10", "--input", "3,32,32"
    )
    assert data["input_shape"] == [3, 32, 32]
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)  # the --arg reached the builder
    assert data["params"] == sum(p.numel() for p in model.parameters())
    assert data["flops"] == _library_totals(model, (3, 32, 32))["flops"]  # and --input the counter


def test_inspect_latency(capsys):
    data = run_json(
        capsys, "inspect", "torchvision.models:mobilenet_v3_small", "--input", "3,64,64", "--latency"
    )
    assert data["latency_ms"] > 0 and data["latency_iqr_ms"] >= 0


def test_inspect_fvcore_cross_check(capsys):
    data = run_json(
        capsys, "inspect", "torchvision.models:resnet18", "--input", "3,64,64", "--counter", "fvcore"
    )
    assert data["fvcore"]["macs"] == data["macs"]


def test_inspect_table(capsys):
    assert main(["inspect", "torchvision.models:resnet18", "--input", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "layer4.1.conv2" in out and "total" in out and "flops" in out


def test_ops_lists_every_operator(capsys):
    import operators

    data = run_json(capsys, "ops")
    assert list(data) == operators.names()
    for entry in data.values():
        assert entry["summary"] and isinstance(entry["params"], list)


def test_ops_table_prints_the_summaries_as_written(capsys, monkeypatch):
    import operators

    monkeypatch.setenv("COLUMNS", "400")  # one line per summary
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    for name in operators.names():
        assert operators.get(name).summary in out  # square brackets included, not taken for markup


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["inspect", "nofamily:whatever"], "no module named 'nofamily'"),
        (["inspect", "torchvision.models:resnet18", "--input", "3,224"], "--input '3,224'"),
        (["inspect", "torchvision.models:not_a_model"], "has no attribute 'not_a_model'"),
        (["inspect", "torchvision.models:resnet18", "--arg", "colour=red"], "colour"),
        (["inspect", "torchvision.models:resnet18", "--op", "nope"], "unknown operator 'nope'"),
        (["inspect", "noseparator"], "expected FAMILY:CONFIG"),
        (["inspect", "tests/nas/untraceable_model.py:build"], "leaf"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_the_entry_point_exits_2_with_one_line_and_debug_shows_traceback():
    """``python -m nas.cli`` as a user runs it: the exit code and stderr of the process itself."""
    result = subprocess.run(
        [sys.executable, "-m", "nas.cli", "inspect", "nofamily:x"], capture_output=True, text=True
    )
    lines = [line for line in result.stderr.splitlines() if line.strip() and "cpp_extension" not in line]
    assert result.returncode == 2 and len(lines) == 1 and "no module named 'nofamily'" in lines[0], (
        result.stderr
    )
    result = subprocess.run(
        [sys.executable, "-m", "nas.cli", "--debug", "inspect", "nofamily:x"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" in result.stderr


@pytest.mark.parametrize(
    "op", ["weighted:density=0.8", "large_kernel:large_kernel_size=7", "conv_lora:rank=2", "complex"]
)
def test_inspect_rewrites_and_checks_collapse(capsys, op):
    data = run_json(capsys, "inspect", "compact:ConvOps-S", "--op", op, "--check")
    assert data["rewritten"] > 0 and isinstance(data["skipped"], dict)
    assert data["max_abs_diff"] < 1e-4
    assert all(isinstance(reason, str) and reason for reason in data["skipped"].values())


def test_collapse_check_runs_each_operator_from_its_parameters(monkeypatch):
    """A collapse that disagrees with the operator's training-time computation shows, although in eval under
    no_grad the operator itself would reuse the (wrong) collapsed kernel."""
    from nas.graph.capture import capture
    from nas.graph.rewrite import rewrite_with_operator
    from nas.inspection import check_collapse
    from nas.models import build_model
    from operators.large_kernel import LargeKernelConv2d

    def rewritten_model():
        model = capture(build_model("compact:ConvOps-S").module, (1, 32, 32))
        assert rewrite_with_operator(model, "large_kernel", {"large_kernel_size": 7}).rewritten
        return model

    exact = check_collapse(rewritten_model(), (1, 32, 32))
    assert exact < 1e-4
    fused = LargeKernelConv2d.fused_kernel
    monkeypatch.setattr(LargeKernelConv2d, "fused_kernel", lambda self: (2 * fused(self)[0], fused(self)[1]))
    assert check_collapse(rewritten_model(), (1, 32, 32)) > 100 * max(exact, 1e-7)


def test_inspect_reports_training_params_beside_deployed(capsys):
    data = run_json(capsys, "inspect", "compact:ConvOps-S", "--op", "large_kernel:large_kernel_size=5")
    assert data["training_params"] > data["params"]  # BN per branch exists only in training
