"""Reading an export back (``nas inspect model.pt``): its metadata, the costs of the exported graph counted
from the file, and optionally its latency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import NasError
from ..latency import LatencySettings, measure_latency
from .costs import count_exported
from .metadata import parse
from .script import load_torchscript


def inspect_export(
    path: Path, input_shape: Sequence[int] | None = None, latency: LatencySettings | None = None
) -> dict[str, Any]:
    """``file``, ``metadata``, ``input_shape``, ``flops``, ``macs``, ``acts``, ``params``, ``unknown_ops`` and,
    with ``latency``, the ``latency_*`` keys of ``nas.latency``."""
    module, text = load_torchscript(Path(path))
    metadata = parse(text)
    shape = input_shape or (metadata or {}).get("input_shape")
    if not shape:
        raise NasError(f"{path}: the file has no nas.json metadata with its input shape; give --input C,H,W")
    shape = tuple(int(s) for s in shape)
    try:
        costs = count_exported(module, shape)
    except RuntimeError as error:
        raise NasError(
            f"{path}: the model does not run on an input of shape {list(shape)} ({error})"
        ) from None
    data: dict[str, Any] = {"file": str(path), "metadata": metadata, "input_shape": list(shape), **costs}
    if latency is not None:
        data.update(measure_latency(module, shape, latency).as_dict())
    return data
