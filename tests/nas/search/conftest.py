"""A tiny space for end-to-end search tests: synthetic 8x8 data, a compact CNN of 8 channels, 1 epoch."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.tiny_space import tiny_space

TINY = tiny_space()


@pytest.fixture
def tiny_space(tmp_path: Path):
    def make(extra: str = "", name: str = "space.yaml") -> str:
        path = tmp_path / name
        path.write_text(TINY + textwrap.dedent(extra))
        return str(path)

    return make
