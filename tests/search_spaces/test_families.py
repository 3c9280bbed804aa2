"""Contract over every registered family and config: builds, traces with torch.fx, runs, takes user kwargs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.fx
from torch import nn

from search_spaces import family_names, get_family

ALL_CONFIGS = [(family, config) for family in family_names() for config in get_family(family).configs]

# (family, config, resolution used for a real forward): small configs, small inputs
SMALL = [
    ("resnet", "ResNet-20-cifar", 32),
    ("resnet", "ResNet-18", 64),
    ("regnet", "RegNetX-200MF", 64),
    ("regnet", "RegNetY-200MF", 64),
    ("effnet", "EN-B0", 64),
    ("vgg", "VGG-11-cifar", 32),
    ("dncnn", "DnCNN-17", 24),
]


def test_builtin_families_are_registered() -> None:
    assert set(family_names()) >= {"regnet", "resnet", "effnet", "vgg", "dncnn"}
    assert len(get_family("regnet").configs) == 24
    assert set(get_family("effnet").configs) == {f"EN-B{index}" for index in range(6)}
    assert set(get_family("vgg").configs) == {"VGG-11-cifar", "VGG-13-cifar", "VGG-16-cifar", "VGG-19-cifar"}
    assert set(get_family("dncnn").configs) == {"DnCNN-17", "DnCNN-20"}


@pytest.mark.parametrize(("family_name", "config_name"), ALL_CONFIGS)
def test_config_builds_and_traces(family_name: str, config_name: str, build_on_meta) -> None:
    family = get_family(family_name)
    params = family.config(config_name)
    assert dataclasses.is_dataclass(params)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.in_channels = 5  # type: ignore[misc]
    assert family.input_shape(params) == (params.in_channels, params.resolution, params.resolution)

    model = build_on_meta(family_name, config_name)
    graph_module = torch.fx.symbolic_trace(model)
    called = {node.target for node in graph_module.graph.nodes if node.op == "call_module"}
    convs = {name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}
    assert convs and convs <= called  # every conv and linear appears as a node named by its module path


@pytest.mark.parametrize(("family_name", "config_name", "resolution"), SMALL)
def test_small_config_runs_and_traced_graph_agrees(
    family_name: str, config_name: str, resolution: int
) -> None:
    torch.manual_seed(0)
    family = get_family(family_name)
    params = family.config(config_name)
    model = family.build(params).eval()
    channels = family.input_shape(params)[0]
    x = torch.randn(2, channels, resolution, resolution)
    with torch.no_grad():
        out = model(x)
        traced = torch.fx.symbolic_trace(model)(x)
    expected_shape = (
        (2, channels, resolution, resolution) if family_name == "dncnn" else (2, params.num_classes)
    )
    assert out.shape == expected_shape
    assert torch.isfinite(out).all()
    torch.testing.assert_close(traced, out, rtol=0, atol=0)


def test_training_step_reaches_every_parameter() -> None:
    model = get_family("regnet").build(get_family("regnet").config("RegNetY-200MF"))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing


@pytest.mark.parametrize(
    ("family_name", "config_name", "resolution"),
    [
        ("resnet", "ResNet-20-cifar", 32),
        ("regnet", "RegNetX-200MF", 32),
        ("effnet", "EN-B0", 32),
        ("vgg", "VGG-11-cifar", 32),
    ],
)
def test_user_kwargs_num_classes_and_in_channels(family_name: str, config_name: str, resolution: int) -> None:
    family = get_family(family_name)
    params = dataclasses.replace(
        family.config(config_name), num_classes=7, in_channels=1, resolution=resolution
    )
    assert family.input_shape(params) == (1, resolution, resolution)
    model = family.build(params).eval()
    first_conv = next(module for module in model.modules() if isinstance(module, nn.Conv2d))
    assert first_conv.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(3, 1, resolution, resolution)).shape == (3, 7)


def test_dncnn_kwargs_change_channels_and_depth() -> None:
    family = get_family("dncnn")
    params = dataclasses.replace(family.config("DnCNN-17"), in_channels=3, depth=5, features=16)
    model = family.build(params).eval()
    assert sum(isinstance(module, nn.Conv2d) for module in model.modules()) == 5
    with torch.no_grad():
        assert model(torch.randn(1, 3, 20, 20)).shape == (1, 3, 20, 20)


def test_unknown_config_raises_key_error_listing_known_names() -> None:
    family = get_family("regnet")
    with pytest.raises(KeyError) as error:
        family.config("RegNetZ-1GF")
    assert "RegNetZ-1GF" in str(error.value)
    assert "RegNetX-200MF" in str(error.value) and "RegNetY-32GF" in str(error.value)
    with pytest.raises(KeyError, match="VGG-16-cifar"):
        get_family("vgg").config("VGG-16")


def test_unknown_family_raises_key_error_listing_known_families() -> None:
    with pytest.raises(KeyError, match="regnet") as error:
        get_family("mobilenet")
    assert "mobilenet" in str(error.value)


def test_unknown_user_kwarg_is_an_error() -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(get_family("resnet").config("ResNet-18"), num_class=10)
