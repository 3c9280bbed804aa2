"""Parameter and multiply-add counts of the built-in families against pycls (shared/reference/README.md).

Every config of ``pycls_counts.json`` is built through its family on the meta device and measured with
``torch.utils.flop_counter.FlopCounterMode`` (2 flops per multiply-add) at the config's resolution, batch 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from search_spaces import get_family


def _reference_dir() -> Path:
    """``$NAS_REFERENCE_DIR``, else ``tests/data``, else ``shared/reference`` in the repository or beside it."""
    root = Path(__file__).resolve().parents[2]
    candidates = [Path(os.environ["NAS_REFERENCE_DIR"])] if "NAS_REFERENCE_DIR" in os.environ else []
    candidates += [
        root / "tests" / "data",
        root / "shared" / "reference",
        root.parent / "shared" / "reference",
    ]
    for candidate in candidates:
        if (candidate / "pycls_counts.json").is_file():
            return candidate
    raise FileNotFoundError(f"pycls reference data not found in any of {[str(c) for c in candidates]}")


REFERENCE_DIR = _reference_dir()
PYCLS_COUNTS: dict[str, dict] = json.loads((REFERENCE_DIR / "pycls_counts.json").read_text())
PYCLS_COMPLEXITY: dict[str, dict] = json.loads((REFERENCE_DIR / "pycls_model_complexity.json").read_text())


def _family_of(config_name: str) -> str:
    if config_name.startswith("RegNet"):
        return "regnet"
    if config_name.startswith("EN-"):
        return "effnet"
    return "resnet"


def count_params(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, torch.Size]:
    """Multiply-adds of one forward on a meta batch of 1, and the output shape."""
    device = next(model.parameters()).device
    x = torch.empty(1, *input_shape, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = model(x)
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2, out.shape


def test_reference_covers_all_families() -> None:
    assert {_family_of(name) for name in PYCLS_COUNTS} == {"regnet", "resnet", "effnet"}
    assert len(PYCLS_COUNTS) == 36


@pytest.mark.parametrize("config_name", sorted(PYCLS_COUNTS))
def test_params_and_macs_match_pycls(config_name: str, build_on_meta) -> None:
    reference = PYCLS_COUNTS[config_name]
    family = get_family(_family_of(config_name))
    params = family.config(config_name)
    assert params.resolution == reference["resolution"]
    assert params.test_resolution == reference["test_resolution"]
    assert family.input_shape(params) == (3, reference["resolution"], reference["resolution"])

    model = build_on_meta(family.name, config_name)
    assert count_params(model) == reference["params"]
    macs, out_shape = count_macs(model, family.input_shape(params))
    assert macs == reference["macs"]
    assert out_shape == (1, 1000)


def test_regnet_generator_parameters_match_pycls() -> None:
    family = get_family("regnet")
    for name, reference in PYCLS_COUNTS.items():
        if "regnet" not in reference:
            continue
        generator = reference["regnet"]
        params = family.config(name)
        assert (params.depth, params.w0, params.wa, params.wm) == tuple(
            generator[key] for key in ("depth", "w0", "wa", "wm")
        )
        assert params.group_width == generator["group_w"]
        assert params.bottleneck_multiplier == generator["bot_mul"]
        assert params.se_ratio == (generator["se_ratio"] or 0.0)
    regnet_names = {name for name in PYCLS_COUNTS if name.startswith("RegNet")}
    assert set(family.configs) == regnet_names


def test_anynet_and_effnet_stage_parameters_match_pycls() -> None:
    for name, reference in PYCLS_COUNTS.items():
        if "anynet" in reference:
            stages = reference["anynet"]
            params = get_family("resnet").config(name)
            assert (params.stem_type, params.stem_width, params.block_type) == (
                stages["stem_type"],
                stages["stem_w"],
                stages["block_type"],
            )
            assert params.depths == tuple(stages["depths"])
            assert params.widths == tuple(stages["widths"])
            assert params.strides == tuple(stages["strides"])
            assert params.bottleneck_multipliers == tuple(stages["bot_muls"])
            assert params.group_widths == tuple(stages["group_ws"])
        if "effnet" in reference:
            stages = reference["effnet"]
            params = get_family("effnet").config(name)
            assert (params.stem_width, params.head_width, params.se_ratio) == (
                stages["stem_w"],
                stages["head_w"],
                stages["se_ratio"],
            )
            assert params.depths == tuple(stages["depths"])
            assert params.widths == tuple(stages["widths"])
            assert params.strides == tuple(stages["strides"])
            assert params.expansion_ratios == tuple(stages["exp_ratios"])
            assert params.kernel_sizes == tuple(stages["kernels"])


@pytest.mark.parametrize(
    ("config_name", "pycls_name"), [("ResNet-56-cifar", "R-56"), ("ResNet-110-cifar", "R-110")]
)
def test_cifar_resnets_match_pycls_model_complexity(config_name: str, pycls_name: str, build_on_meta) -> None:
    family = get_family("resnet")
    params = family.config(config_name)
    assert family.input_shape(params) == (3, 32, 32)
    model = build_on_meta("resnet", config_name)
    macs, out_shape = count_macs(model, family.input_shape(params))
    assert out_shape == (1, 10)
    for variant in ("anynet", "resnet"):
        reference = PYCLS_COMPLEXITY[f"configs/archive/cifar/{variant}/{pycls_name}_nds_1gpu.yaml"]
        assert count_params(model) == reference["params"]
        # pycls flops = macs + bias additions; the only bias is the classifier's (num_classes per image)
        assert macs + params.num_classes == reference["flops"]


@pytest.mark.parametrize(
    ("alias", "pycls_name"),
    [
        ("ResNet-50", "R-50-1x64d"),
        ("ResNet-101", "R-101-1x64d"),
        ("ResNet-152", "R-152-1x64d"),
        ("ResNeXt-50-32x4d", "X-50-32x4d"),
        ("ResNeXt-101-32x4d", "X-101-32x4d"),
    ],
)
def test_resnet_aliases_are_the_pycls_configs(alias: str, pycls_name: str) -> None:
    family = get_family("resnet")
    assert family.config(alias) == family.config(pycls_name)


@pytest.mark.parametrize(("config_name", "builder"), [("ResNet-18", "resnet18"), ("ResNet-34", "resnet34")])
def test_basic_block_resnets_match_torchvision(config_name: str, builder: str, build_on_meta) -> None:
    with torch.device("meta"):
        expected = getattr(torchvision.models, builder)().eval()
    model = build_on_meta("resnet", config_name)
    shape = get_family("resnet").input_shape(get_family("resnet").config(config_name))
    assert count_params(model) == count_params(expected)
    assert count_macs(model, shape) == count_macs(expected, shape)
