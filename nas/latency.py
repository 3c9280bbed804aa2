"""Measured forward latency: warm-up, ``torch.utils.benchmark``, median and interquartile range in ms."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import NasError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LatencySettings:
    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None  # None: torch's current setting
    dtype: str = "float32"
    channels_last: bool = False
    warmup: int = 3
    min_run_time: float = 0.5  # seconds of timed runs after warm-up

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise NasError(f"latency dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1:
            raise NasError(f"latency batch size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Latency:
    median_ms: float
    iqr_ms: float
    runs: int
    peak_memory_bytes: int | None  # CUDA only
    device: str
    batch_size: int

    def as_dict(self) -> dict[str, Any]:
        return dict(
            latency_ms=self.median_ms,
            latency_iqr_ms=self.iqr_ms,
            latency_runs=self.runs,
            latency_peak_memory_bytes=self.peak_memory_bytes,
            latency_device=self.device,
            latency_batch_size=self.batch_size,
        )


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an unavailable cuda is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise NasError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved


@contextmanager
def _threads(count: int | None):
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _benchmark_module():
    """torch.utils.benchmark, imported on first use; on CUDA builds without a CUDA runtime its import logs a
    warning about CUDA_HOME that has nothing to do with the measurement, so that logger is quieted meanwhile."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.benchmark as benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def measure_latency(
    model: nn.Module, input_shape: Sequence[int], settings: LatencySettings = LatencySettings()
) -> Latency:
    """Median forward latency of ``model`` (eval mode, no grad) on a random input of ``input_shape`` (C, H, W).

    The model is moved to the device and dtype for the measurement; pass a copy if that matters.
    """
    device = resolve_device(settings.device)
    dtype = DTYPES[settings.dtype]
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(device=device, dtype=dtype, memory_format=memory_format).eval()
    x = torch.randn(settings.batch_size, *input_shape, device=device, dtype=dtype).to(
        memory_format=memory_format
    )
    with _threads(settings.threads), torch.inference_mode():
        for _ in range(settings.warmup):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        timer = _benchmark_module().Timer(
            stmt="model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads()
        )
        measurement = timer.blocked_autorange(min_run_time=settings.min_run_time)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Latency(
        median_ms=measurement.median * 1e3,
        iqr_ms=measurement.iqr * 1e3,
        runs=len(measurement.times),
        peak_memory_bytes=peak,
        device=str(device),
        batch_size=settings.batch_size,
    )
