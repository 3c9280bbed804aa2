"""The contract of every registry (operators, model families, datasets, family scalers): one ``Registry`` class,
``register`` refuses a taken name, ``get`` of an unknown name raises a KeyError-like error listing the known names,
``names`` lists them in registration order."""

from __future__ import annotations

import pytest

import nas.data
import nas.scaling.parametric
import operators
import search_spaces
from nas.errors import DataError
from operators.registry import OPERATORS, Registry, UnknownName
from search_spaces.registry import FAMILIES


def test_registry_register_get_names():
    registry: Registry[int] = Registry("widget", hint=", or a number")
    assert registry.register("a", 1) == 1 and registry.register("b", 2) == 2
    assert registry.names() == ["a", "b"] and list(registry) == ["a", "b"] and len(registry) == 2
    assert "a" in registry and "c" not in registry
    assert registry.get("b") == 2
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a", 3)
    assert registry.get("a") == 1  # the refused duplicate changed nothing
    with pytest.raises(ValueError, match="non-empty name"):
        registry.register("", 4)
    with pytest.raises(UnknownName) as error:
        registry.get("c")
    assert isinstance(error.value, KeyError) and isinstance(error.value, LookupError)
    assert (
        str(error.value) == "unknown widget 'c' (known: a, b, or a number)"
    )  # not quoted, as KeyError would
    with pytest.raises(UnknownName, match="known: none"):
        Registry("thing").get("x")


# (the registry, how its module registers an existing item again, how its module looks up a name, the error)
REGISTRIES = {
    "operators": (
        OPERATORS,
        lambda: operators.register(operators.get("conv")),
        operators.get,
        KeyError,
    ),
    "families": (
        FAMILIES,
        lambda: search_spaces.register_family(search_spaces.get_family("regnet")),
        search_spaces.get_family,
        KeyError,
    ),
    "datasets": (
        nas.data.registry.DATASETS,
        lambda: nas.data.register(nas.data.get("digits")),
        nas.data.get,
        DataError,
    ),
    "scalers": (
        nas.scaling.parametric.SCALERS,
        lambda: nas.scaling.parametric.register_scaler(
            nas.scaling.parametric.SCALERS.get(nas.scaling.parametric.SCALERS.names()[0])
        ),
        nas.scaling.parametric.SCALERS.get,
        KeyError,
    ),
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_registry_keeps_the_contract(kind):
    registry, register_again, get, error = REGISTRIES[kind]
    assert isinstance(registry, Registry)
    names = registry.names()
    assert names, f"the {kind} registry is empty"
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="already registered"):
        register_again()
    assert registry.names() == names
    for name in names:
        assert get(name) is registry.get(name)
    with pytest.raises(error) as raised:
        get("no-such-name")
    message = str(raised.value)
    assert "no-such-name" in message and all(name in message for name in names)


def test_scaler_lookup_by_parameters():
    params = search_spaces.get_family("regnet").config("RegNetY-200MF")
    scaler = nas.scaling.parametric.get_scaler(params)
    assert scaler is not None and scaler.params_type is type(params)
    assert nas.scaling.parametric.get_scaler(object()) is None
    assert "RegNetParams" in nas.scaling.parametric.scalable_types()
