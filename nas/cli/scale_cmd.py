"""``nas scale``: scale a model's flops by a factor with a scaling rule (Dollar et al. 2021)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..errors import NasError
from .common import add_model_arguments, console_for_tables, human, parse_input_shape, print_json

EXAMPLES = """\
examples:
  nas scale regnet:RegNetY-4.0GF --factor 4 --rule dWr          pycls's fast compound scaling, exact
  nas scale resnet:ResNet-50 --factor 2 --rule d1_w8_g8_r1 --json
  nas scale torchvision.models:convnext_tiny --factor 4 --input 3,224,224 --check
  nas scale effnet:EN-B0 --factor 8 --rule alpha=0.8 --out en-b0-x8.yaml   (a space can use it as its base)
  nas scale vgg:VGG-16-cifar --factor 2 --rule dw --method graph

Rules: dWr (= d1_w8_g8_r1, fast compound scaling), d, w, r, dw, dr, wr, dwr, dwgr, d<a>_w<b>_g<c>_r<e>, alpha=<a>.
Built-in families are scaled through their parameters exactly as pycls does; any other model through its graph
(channel groups, repeated blocks, input size), with the width multiplier corrected so that flops grow by the
factor (--no-match-flops: the rule's multiplier as is). Notes say what could not be scaled and why.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scale",
        help="scale a model's flops by a factor: depth, width, groups, resolution (fast compound scaling)",
        description="Scale a model with a scaling rule; print costs before and after and the new architecture.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model reference: FAMILY:CONFIG or package.module:callable")
    add_model_arguments(parser)
    parser.add_argument("--factor", type=float, required=True, help="flops multiplier s (e.g. 4)")
    parser.add_argument("--rule", default="dWr", help="scaling rule (default: dWr, fast compound scaling)")
    parser.add_argument(
        "--method",
        choices=("auto", "parametric", "graph"),
        default="auto",
        help="parametric (built-in families, pycls-exact), graph (any model) or auto (default)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--out", metavar="FILE.yaml", help="write the scaled model file (nas.scaling.load_scaled)"
    )
    parser.add_argument(
        "--check", action="store_true", help="build the scaled model and run it on a random input"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh initialization (default 0)")
    parser.add_argument(
        "--no-match-flops",
        action="store_true",
        help="graph-level: use the rule's width multiplier as is (realized flops may be off)",
    )
    parser.add_argument(
        "--leaf",
        action="append",
        default=[],
        metavar="package.module.Class",
        help="module type to keep as one node when tracing (repeatable)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..graph.capture import resolve_leaf_types
    from ..models import build_model, parse_model_args
    from ..scaling import save_scaled, scale_model, scaled_document

    if not (math.isfinite(args.factor) and args.factor > 0):
        raise NasError(f"--factor {args.factor}: expected a positive number")
    model_args = parse_model_args(args.model_args)
    input_shape = parse_input_shape(args.input) if args.input else None
    built = build_model(args.model, model_args)
    scaled = scale_model(
        built,
        args.factor,
        args.rule,
        input_shape,
        method=args.method,
        materialize=args.check,
        seed=args.seed,
        match_flops=not args.no_match_flops,
        leaf_modules=resolve_leaf_types(args.leaf),
    )
    costs = scaled.costs()
    data: dict[str, Any] = {"model": args.model, **scaled.summary(), **costs}
    if args.check:
        data["output_shape"] = _run_once(scaled.module, scaled.input_shape)
    if args.out:
        document = scaled_document(
            scaled, args.model, model_args, input_shape, args.leaf, args.seed, not args.no_match_flops, costs
        )
        data["out"] = str(save_scaled(args.out, document))
    if args.json:
        print_json(data)
    else:
        _print(data)
    return 0


def _run_once(module: Any, input_shape: tuple[int, ...]) -> list[int]:
    import torch

    module.eval()
    with torch.no_grad():
        output = module(torch.randn(1, *input_shape))
    if not isinstance(output, torch.Tensor):
        raise NasError(f"the scaled model returned {type(output).__name__}, not a tensor")
    if not torch.isfinite(output).all():
        raise NasError("the scaled model's output is not finite")
    return list(output.shape)


def _print(data: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = console_for_tables()
    title = escape(f"{data['model']}  x{data['factor']:g} by {data['rule']} ({data['method']})")
    table = Table(title=title)
    for column in ("", "flops", "params", "acts"):
        table.add_column(column, justify="left" if not column else "right")
    for row in ("before", "after"):
        if row in data:
            table.add_row(
                row, *(f"{data[row][key]:,} ({human(data[row][key])})" for key in ("flops", "params", "acts"))
            )
    if "ratios" in data:
        table.add_row("ratio", *(f"{data['ratios'][key]:.3f}x" for key in ("flops", "params", "acts")))
    console.print(table)
    factors = data["factors"]
    console.print("factors  " + "  ".join(f"{key} {value:.4f}" for key, value in factors.items()))
    before = data["architecture_before"]
    for key in (
        "depths",
        "widths",
        "group_widths",
        "resolution",
        "test_resolution",
        "stem_width",
        "head_width",
    ):
        if key in data:
            console.print(escape(f"{key:15s} {before.get(key)} -> {data[key]}"))
    if data.get("stages"):
        console.print(escape(f"stages          {', '.join(data['stages'])}"))
    console.print(f"input           {tuple(data['input_shape'])}")
    if "output_shape" in data:
        console.print(f"check: the scaled model runs, output shape {tuple(data['output_shape'])}")
    for note in data["notes"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if "out" in data:
        console.print(escape(f"wrote {data['out']}"))
