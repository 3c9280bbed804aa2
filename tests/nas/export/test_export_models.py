"""Export and reload for every operator, on a built-in family and on torchvision's ResNet, MobileNet,
EfficientNet and ConvNeXt; costs counted from the file; the trace fallback; parametrized modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

import operators
from nas.cost import count
from nas.export import ExportOptions, count_exported, export_module, export_reference, prepare_for_export
from nas.export.verify import RELATIVE_TOLERANCE, flatten_outputs
from nas.graph import Ineligible, capture, conv_nodes, rewrite

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
FAST = dict(pt2=False, verify=False, latency=None)  # the fresh-process check and .pt2 are tested elsewhere


def _load(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    files = {"nas.json": ""}
    module = torch.jit.load(str(path), _extra_files=files)  # torch alone
    return module, json.loads(files["nas.json"])


def _assert_reproduces(exported: torch.jit.ScriptModule, model: nn.Module, input_shape) -> None:
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        expected, got = flatten_outputs(model(x)), flatten_outputs(exported(x))
    scale = max(float(t.abs().max()) for t in expected)
    diff = max(float((a - b).abs().max()) for a, b in zip(got, expected))
    assert diff <= RELATIVE_TOLERANCE * scale, (diff, scale)


@pytest.mark.parametrize("name", operators.names())
def test_every_operator_on_a_builtin_family(name, tmp_path):
    params = dict(operators.get(name).example_params[0])
    out = tmp_path / "model.pt"
    result = export_reference("compact:ConvOps-S", ExportOptions(out=out, **FAST), operator=(name, params))
    exported, metadata = _load(out)
    assert metadata["operator"]["name"] == name and metadata["operator"]["rewritten"] > 0
    assert metadata["collapsed_operators"] == metadata["operator"]["rewritten"]
    assert metadata["torchscript"] == "script" and result.method == "script"
    assert metadata["folded_batchnorms"] == 10 and metadata["input_shape"] == [1, 16, 16]
    assert not any(
        type(m).__name__ == "RecursiveScriptModule" and m.original_name == "BatchNorm2d"
        for m in exported.modules()
    )
    assert "operators" not in exported.code and "ConvOperator" not in exported.code
    # the same model, rebuilt the same way (seed 0), is what the file reproduces
    from nas.graph import rewrite_with_operator
    from nas.models import build_model

    torch.manual_seed(0)
    built = build_model("compact:ConvOps-S")
    module = capture(built.module, built.input_shape)
    rewrite_with_operator(module, name, params)
    _assert_reproduces(exported, module, built.input_shape)


def _eligible(module) -> dict[str, list[str]]:
    """Conv path -> the operators (with their first example parameters) that can replace it."""
    out = {}
    for node in conv_nodes(module):
        out[node.name] = [
            name
            for name in operators.names()
            if operators.get(name).eligibility(node.spec, **operators.get(name).example_params[0]) is None
        ]
    return out


def _plan_every_operator(module, per_operator: int = 2) -> dict[str, str]:
    """Conv path -> operator: every operator eligible somewhere replaces up to ``per_operator`` convs (the
    rarest operators choose first); the other convs stay plain."""
    eligible = _eligible(module)
    plan: dict[str, str] = {}
    rarity = {name: sum(name in ops for ops in eligible.values()) for name in operators.names()}
    for _ in range(per_operator):
        for name in sorted((n for n in rarity if rarity[n]), key=lambda n: rarity[n]):
            free = [path for path, ops in eligible.items() if name in ops and path not in plan]
            if free:
                plan[free[0]] = name
    return plan


def _small_convnext() -> nn.Module:
    return ConvNeXt(
        [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 1)], num_classes=10
    )


TORCHVISION = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=10),
    "convnext": _small_convnext,
}


@pytest.mark.slow
@pytest.mark.parametrize("model_name", list(TORCHVISION))
def test_every_operator_on_torchvision_models(model_name, tmp_path):
    torch.manual_seed(0)
    shape = (3, 32, 32)
    module = capture(TORCHVISION[model_name](), shape)
    plan = _plan_every_operator(module)
    eligible_somewhere = {name for ops in _eligible(module).values() for name in ops}

    def build(node, conv):
        if node.name not in plan:
            raise Ineligible("no operator is eligible")
        name = plan[node.name]
        return operators.get(name).from_conv(conv, **operators.get(name).example_params[0])

    result = rewrite(module, build)
    assert set(result.rewritten) == set(plan) and set(plan.values()) == eligible_somewhere
    assert len(eligible_somewhere) >= 5, eligible_somewhere
    out = tmp_path / "model.pt"
    export_module(module, shape, {"source": "model", "model": model_name}, ExportOptions(out=out, **FAST))
    exported, metadata = _load(out)
    assert metadata["torchscript"] == "script" and metadata["collapsed_operators"] == len(result.rewritten)
    _assert_reproduces(exported, module, shape)


@pytest.mark.parametrize("fold_bn", [True, False])
def test_costs_counted_from_the_file_match_the_cost_model(fold_bn, tmp_path):
    torch.manual_seed(0)
    module = capture(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
    prepared = prepare_for_export(module, fold_bn)
    expected = count(prepared.module)
    out = tmp_path / "model.pt"
    export_module(module, (3, 32, 32), {}, ExportOptions(out=out, fold_bn=fold_bn, **FAST))
    exported, metadata = _load(out)
    counted = count_exported(exported, (3, 32, 32))
    assert {k: counted[k] for k in expected.totals()} == expected.totals() == metadata["costs"]
    assert counted["unknown_ops"] == {}
    assert len(prepared.folded) == (20 if fold_bn else 0)
    # folding adds the bias additions of the 20 folded convs and removes BatchNorm's parameters
    unfolded = count(prepare_for_export(module, False).module)
    assert (expected.flops > unfolded.flops) == fold_bn and expected.macs == unfolded.macs


class _Router(nn.Module):
    """Not scriptable (it calls numpy), so the export falls back to tracing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float(numpy.sqrt(4.0))


class _RoutedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.router = _Router()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.router(self.conv(x))


def test_unscriptable_model_is_traced_with_a_warning(tmp_path):
    module = capture(_RoutedNet(), (3, 8, 8), leaf_modules=[_Router])
    result = export_module(module, (3, 8, 8), {}, ExportOptions(out=tmp_path / "m.pt", **FAST))
    assert result.method == "trace" and result.metadata["torchscript"] == "trace"
    assert len(result.warnings) == 1 and "torch.jit.script could not compile" in result.warnings[0]
    assert "torch.jit.trace" in result.warnings[0]
    exported, _ = _load(tmp_path / "m.pt")
    _assert_reproduces(exported, module, (3, 8, 8))


def test_parametrized_modules_are_materialized_and_scripted(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    nn.utils.parametrizations.weight_norm(model[0])
    nn.utils.parametrizations.orthogonal(model[2])
    module = capture(model, (3, 8, 8))
    result = export_module(module, (3, 8, 8), {}, ExportOptions(out=tmp_path / "m.pt", **FAST))
    assert result.method == "script" and result.warnings == []
    assert sorted(result.metadata["materialized_parametrizations"]) == ["0.weight", "2.weight"]
    exported, _ = _load(tmp_path / "m.pt")
    _assert_reproduces(exported, module, (3, 8, 8))


class _Gate(nn.Module):
    """Data-dependent control flow: TorchScript keeps it, torch.export cannot."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x
        return -x


def test_a_model_torch_export_cannot_take_is_still_scripted(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), _Gate())
    nn.init.ones_(model[0].weight)
    nn.init.zeros_(model[0].bias)
    module = capture(model, (3, 8, 8), leaf_modules=[_Gate])
    (tmp_path / "m.pt2").write_bytes(b"an older export")
    options = ExportOptions(out=tmp_path / "m.pt", verify=False, latency=None)
    result = export_module(module, (3, 8, 8), {}, options)
    assert result.method == "script" and result.pt2 is None and not (tmp_path / "m.pt2").exists()
    assert any("torch.export could not export the model" in w for w in result.warnings)
    assert any("removed the older" in w for w in result.warnings)
    exported, _ = _load(tmp_path / "m.pt")
    x = torch.ones(1, 3, 8, 8)
    with torch.no_grad():  # both branches survive scripting: conv outputs of either sign
        for sign in (1.0, -1.0):
            assert torch.equal(exported(sign * x), module(sign * x))
        assert torch.equal(exported(x), exported(-x))  # x -> x, -x -> -(-x): the same positive output
