"""Argument parsing and printing shared by the commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml
from rich.console import Console

from ..errors import NasError


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` -> (3, 224, 224); anything else is a clear error."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise NasError(f"--input {text!r}: expected C,H,W as positive integers, e.g. 3,224,224") from None
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise NasError(f"--input {text!r}: expected C,H,W as three positive integers, e.g. 3,224,224")
    return shape


def parse_operator(text: str) -> tuple[str, dict[str, Any]]:
    """``"large_kernel:kernel=13,allow_dense=true"`` -> ("large_kernel", {"kernel": 13, "allow_dense": True})."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise NasError(f"--op {text!r}: expected NAME[:key=value,...], got {item!r}")
        params[key.strip()] = yaml.safe_load(value)
    if not name:
        raise NasError(f"--op {text!r}: missing operator name")
    return name, params


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arg",
        dest="model_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the model builder, repeatable (e.g. --arg num_classes=10)",
    )
    parser.add_argument(
        "--input", metavar="C,H,W", help="input shape without batch (default: the family's, else 3,224,224)"
    )


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def console_for_tables() -> Console:
    """A rich console; when stdout is not a terminal, wide enough that tables are not cut."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def human(number: float | int | None) -> str:
    """1234567 -> '1.23M'."""
    if number is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.2f}{unit}"
    return f"{number:g}" if isinstance(number, float) else str(number)


def latency_settings(args: argparse.Namespace) -> Any:
    """``nas inspect``'s latency options as ``LatencySettings``, or None without ``--latency``."""
    if not args.latency:
        return None
    from ..latency import LatencySettings

    return LatencySettings(
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        dtype=args.dtype,
        channels_last=args.channels_last,
    )
