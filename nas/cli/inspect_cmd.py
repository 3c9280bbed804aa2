"""``nas inspect``: costs of a model, per conv and in total."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..errors import NasError
from ..extras import require
from .common import (
    add_model_arguments,
    console_for_tables,
    human,
    latency_settings,
    parse_input_shape,
    parse_operator,
    print_json,
)

EXAMPLES = """\
examples:
  nas inspect resnet:ResNet-50
  nas inspect regnet:RegNetY-400MF --json
  nas inspect torchvision.models:mobilenet_v3_large --input 3,224,224 --latency --batch-size 8
  nas inspect torchvision.models:resnet18 --arg num_classes=10 --input 3,32,32
  nas inspect vgg:VGG-16-cifar --op weighted:density=0.8 --check
  nas inspect my_models.py:build_net --leaf my_models.Router    (keep an untraceable module as one node)
  nas inspect --list

Costs follow pycls: flops = multiply-adds of conv/linear/matmul + bias additions; macs = without bias;
acts = output elements of conv, linear and non-global pooling; params of the deployed (collapsed) model.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="costs of a model: flops, macs, params, acts per conv and in total",
        description="Capture a model with torch.fx, propagate shapes on meta tensors and count its costs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="model reference: FAMILY:CONFIG or package.module:callable")
    add_model_arguments(parser)
    parser.add_argument("--list", action="store_true", help="list the built-in families and their configs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--op", metavar="NAME[:k=v,...]", help="rewrite every eligible conv with this operator"
    )
    parser.add_argument(
        "--check", action="store_true", help="with --op: compare the model with its collapsed form"
    )
    parser.add_argument(
        "--counter",
        choices=("analytic", "fvcore"),
        default="analytic",
        help="cost backend: the exact analytic counter (default) or fvcore as a cross-check",
    )
    parser.add_argument(
        "--leaf",
        action="append",
        default=[],
        metavar="package.module.Class",
        help="module type to keep as one node when tracing (repeatable)",
    )
    latency = parser.add_argument_group("latency")
    latency.add_argument("--latency", action="store_true", help="measure forward latency (median and IQR)")
    latency.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    latency.add_argument("--batch-size", type=int, default=1, help="batch size for latency (default: 1)")
    latency.add_argument(
        "--threads", type=int, default=None, help="CPU threads for latency (default: torch's)"
    )
    latency.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    latency.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..graph.capture import resolve_leaf_types
    from ..inspection import analyze
    from ..models import parse_model_args

    if args.list:
        return _print_models(args.json)
    from .export_cmd import is_export, run_inspect

    if is_export(args.model):  # an exported TorchScript file (nas export), not a model reference
        return run_inspect(args)
    if not args.model:
        raise NasError(
            "a MODEL reference is required (e.g. nas inspect resnet:ResNet-50; nas inspect --list)"
        )
    latency = latency_settings(args)
    if args.counter == "fvcore":
        require("fvcore", "nas inspect --counter fvcore")
    analysis = analyze(
        args.model,
        model_kwargs=parse_model_args(args.model_args),
        input_shape=parse_input_shape(args.input) if args.input else None,
        operator=parse_operator(args.op) if args.op else None,
        check=args.check,
        latency=latency,
        leaf_modules=resolve_leaf_types(args.leaf),
    )
    data = analysis.as_dict()
    if args.counter == "fvcore":
        from ..cost.fvcore import fvcore_count

        data["fvcore"] = fvcore_count(analysis.module, analysis.input_shape)
    if args.json:
        print_json(data)
    else:
        _print_table(data)
    return 0


def _print_models(as_json: bool) -> int:
    from ..models import list_models

    models = list_models()
    if as_json:
        print_json(models)
        return 0
    console = Console()
    for family, configs in models.items():
        console.print(f"[bold]{family}[/bold]: " + ", ".join(f"{family}:{c}" for c in configs))
    return 0


def _print_table(data: dict) -> None:
    console = console_for_tables()
    table = Table(title=f"{data['model']}  input {tuple(data['input_shape'])}", show_lines=False)
    for column in ("conv", "type", "in", "out", "kernel", "stride", "groups", "output", "flops", "acts"):
        table.add_column(column, justify="left" if column in ("conv", "type") else "right")
    for conv in data["convs"]:
        table.add_row(
            conv["name"],
            conv["type"],
            str(conv["in_channels"]),
            str(conv["out_channels"]),
            "x".join(map(str, conv["kernel_size"])),
            "x".join(map(str, conv["stride"])),
            str(conv["groups"]),
            "x".join(map(str, conv["output_shape"][1:])),
            human(conv["flops"]),
            human(conv["acts"]),
        )
    console.print(table)
    totals = (
        f"params {data['params']:,}   flops {data['flops']:,}   macs {data['macs']:,}   acts {data['acts']:,}"
    )
    console.print(f"[bold]total[/bold]  {totals}")
    if data["training_params"] != data["params"]:
        console.print(
            f"training-time params {data['training_params']:,} (deployed model: {data['params']:,})"
        )
    if data["unknown_ops"]:
        ops = ", ".join(f"{op} x{n}" for op, n in data["unknown_ops"].items())
        console.print(f"[yellow]not counted (unknown ops):[/yellow] {ops}")
    if "rewritten" in data:
        console.print(f"rewritten {data['rewritten']} convs; skipped {len(data['skipped'])}")
        for node, reason in data["skipped"].items():
            console.print(f"  skipped {node}: {reason}")
    if "max_abs_diff" in data:
        console.print(f"collapse check: max |operator - collapsed| = {data['max_abs_diff']:.3g}")
    if "latency_ms" in data:
        console.print(
            f"latency {data['latency_ms']:.3f} ms (IQR {data['latency_iqr_ms']:.3f} ms, {data['latency_runs']} runs, "
            f"batch {data['latency_batch_size']}, {data['latency_device']})"
        )
    if "fvcore" in data:
        fv = data["fvcore"]
        console.print(
            f"fvcore cross-check: macs {fv['macs']:,} (analytic {data['macs']:,}), "
            f"conv+linear output elements {fv['acts']:,}"
        )
