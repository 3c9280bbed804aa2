"""Shared fixtures for the built-in family tests: models built once on the meta device (no memory, no compute)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from search_spaces import get_family


@pytest.fixture(scope="session")
def build_on_meta() -> Callable[[str, str], nn.Module]:
    """``build_on_meta(family, config)`` -> the config's model with meta parameters, in eval mode, cached."""
    cache: dict[tuple[str, str], nn.Module] = {}

    def build(family_name: str, config_name: str) -> nn.Module:
        key = (family_name, config_name)
        if key not in cache:
            family = get_family(family_name)
            with torch.device("meta"):
                cache[key] = family.build(family.config(config_name)).eval()
        return cache[key]

    return build
