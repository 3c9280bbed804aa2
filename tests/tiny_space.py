"""The tiny space of the end-to-end tests (seconds per trial): synthetic 8x8 data, a compact CNN of 8 channels.
Each suite changes what it needs: ``tiny_space(epochs=2)``, ``tiny_space(samples=1200, epochs=10, ...)``."""

from __future__ import annotations

WEIGHTED = "    weighted: {density: {low: 0.6, high: 1.4}}\n"
CONV_LORA = "    conv_lora: {rank: [2], train_base: true}\n"


def tiny_space(
    *,
    name: str = "tiny",
    epochs: int = 1,
    samples: int = 96,
    conv_lora: bool = True,
    scaling: str = "",
    search: str = "{trials: 3, startup_trials: 2, seed: 0}",
) -> str:
    """The YAML text; ``scaling`` is a whole line (e.g. ``"scaling: {rule: dWr, factor: [2]}\\n"``)."""
    return (
        f"name: {name}\n"
        "model:\n"
        "  ref: compact:ConvOps-S\n"
        "  kwargs: {widths: [8, 8, 8], num_classes: 3}\n"
        "  input: [1, 8, 8]\n"
        "data:\n"
        "  name: synthetic\n"
        f"  options: {{num_samples: {samples}, num_classes: 3, channels: 1, size: 8}}\n"
        "train:\n"
        f"  epochs: {epochs}\n"
        "  batch_size: 32\n"
        "  device: cpu\n"
        "operators:\n"
        "  targets: {min_kernel_size: 3}\n"
        "  choices:\n"
        "    conv: {}\n"
        + WEIGHTED
        + (CONV_LORA if conv_lora else "")
        + scaling
        + "objectives: [accuracy, {flops: minimize}]\n"
        f"search: {search}\n"
    )
