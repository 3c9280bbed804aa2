"""A tiny space for end-to-end search tests: synthetic 8x8 data, a compact CNN of 8 channels, 1 epoch."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

TINY = """\
name: tiny
model:
  ref: compact:ConvOps-S
  kwargs: {widths: [8, 8, 8], num_classes: 3}
  input: [1, 8, 8]
data:
  name: synthetic
  options: {num_samples: 96, num_classes: 3, channels: 1, size: 8}
train:
  epochs: 1
  batch_size: 32
  device: cpu
operators:
  targets: {min_kernel_size: 3}
  choices:
    conv: {}
    weighted: {density: {low: 0.6, high: 1.4}}
    conv_lora: {rank: [2], train_base: true}
objectives: [accuracy, {flops: minimize}]
search: {trials: 3, startup_trials: 2, seed: 0}
"""


@pytest.fixture
def tiny_space(tmp_path: Path):
    def make(extra: str = "", name: str = "space.yaml") -> str:
        path = tmp_path / name
        path.write_text(TINY + textwrap.dedent(extra))
        return str(path)

    return make
