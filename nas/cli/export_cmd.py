"""``nas export``: a trial of a study, or any model reference, as a TorchScript file (+ ``.pt2``, ``.onnx``),
verified in a fresh process without the project. Also prints ``nas inspect model.pt`` (an export read back)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import NasError
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
  nas export --study studies/convops --out best.pt                 the best Pareto trial by the first objective
  nas export --study studies/convops --trial 12 --out t12.pt --onnx
  nas export --study studies/convops --best accuracy --out acc.pt --json
  nas export --study studies/convops --pareto-rank 2 --out second.pt --no-fold-bn
  nas export --run studies/convops/runs/trial7-flops8M --out model.pt   a model trained by `nas train`
  nas export compact:ConvOps-S --op weighted:density=0.8 --out w.pt          random initialization
  nas export regnet:RegNetY-400MF --scale 4 --rule dWr --weights w.pt --out big.pt
  nas inspect best.pt [--latency]                                  read an export back

Writes OUT (TorchScript, metadata in the extra file nas.json) and OUT's .pt2 (torch.export) beside it, then
loads both in a fresh Python process in which this project cannot be imported and compares them with the
unexported model in eval mode: exit 1 when max |diff| exceeds 1e-4 x the output scale.
Load with torch alone: torch.jit.load("best.pt"); a TorchScript file is code: load only files you trust.
The metadata's "preprocessing" says what to do to an image first (resize, channels, mean/std, value range).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="a study's best model (or any model) as TorchScript + torch.export files that need only torch",
        description="Rebuild a trial's model (or a model reference), collapse its operators to plain convs, fold "
        "BatchNorm, script it, save it with its metadata and verify it in a fresh process.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="a model reference (FAMILY:CONFIG or package.module:callable) instead of --study",
    )
    parser.add_argument(
        "--run",
        dest="run_dir",
        metavar="DIR",
        help="a run directory written by `nas train` instead of --study",
    )
    parser.add_argument("--out", required=True, metavar="FILE.pt", help="the TorchScript file to write")
    study = parser.add_argument_group("from a study")
    study.add_argument("--study", metavar="DIR", help="the study directory (e.g. studies/convops)")
    study.add_argument(
        "--storage", metavar="URL", help="Optuna storage URL when the study is not in DIR's journal"
    )
    choice = study.add_mutually_exclusive_group()
    choice.add_argument("--trial", type=int, metavar="N", help="this trial")
    choice.add_argument("--best", metavar="METRIC", help="the best completed, feasible trial by METRIC")
    choice.add_argument(
        "--pareto-rank",
        type=int,
        metavar="K",
        help="the K-th Pareto trial by the first objective (default: 1)",
    )
    model = parser.add_argument_group("from a model reference")
    add_model_arguments(model)
    model.add_argument(
        "--op", metavar="NAME[:k=v,...]", help="rewrite every eligible conv with this operator"
    )
    model.add_argument("--scale", type=float, metavar="S", help="scale the model's flops by S first")
    model.add_argument("--rule", metavar="R", help="scaling rule for --scale (default: dWr)")
    model.add_argument(
        "--weights", metavar="FILE", help="a state dict of the (rewritten) model; default: random"
    )
    model.add_argument(
        "--leaf",
        action="append",
        default=[],
        metavar="package.module.Class",
        help="module type to keep as one node when tracing (repeatable)",
    )
    model.add_argument("--seed", type=int, default=0, help="seed of the random initialization (default 0)")
    parser.add_argument(
        "--no-fold-bn", action="store_true", help="keep BatchNorm layers (default: fold them)"
    )
    parser.add_argument("--onnx", action="store_true", help="also write OUT's .onnx (needs onnx, onnxscript)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    latency = parser.add_argument_group("latency of the exported and the uncollapsed model")
    latency.add_argument("--no-latency", action="store_true", help="do not measure latency")
    latency.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    latency.add_argument("--batch-size", type=int, default=1, help="batch size for latency (default: 1)")
    latency.add_argument(
        "--threads", type=int, default=None, help="CPU threads for latency (default: torch's)"
    )
    latency.add_argument(
        "--min-run-time",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="timed seconds per measurement (default: 0.5)",
    )
    parser.set_defaults(run=run)


def _check_arguments(args: argparse.Namespace) -> None:
    if sum(bool(source) for source in (args.model, args.study, args.run_dir)) != 1:
        raise NasError(
            "give either a MODEL reference or --study DIR (or --run DIR, a `nas train` run), e.g. nas export "
            "--study studies/convops --out best.pt"
        )
    if args.run_dir:
        given = [
            f"--{n.replace('_', '-')}"
            for n in ("trial", "best", "pareto_rank", "storage", "op", "scale", "rule", "weights")
            if getattr(args, n) is not None
        ]
        if given or args.model_args or args.input or args.leaf:
            raise NasError(
                f"{', '.join(given) or '--arg/--input/--leaf'}: not with --run (a run is one model)"
            )
    elif args.study:
        given = [
            f"--{n.replace('_', '-')}"
            for n in ("op", "scale", "rule", "weights")
            if getattr(args, n) is not None
        ]
        if given or args.model_args or args.input or args.leaf:
            raise NasError(
                f"{', '.join(given) or '--arg/--input/--leaf'}: only with a MODEL reference, not --study"
            )
    else:
        given = [
            f"--{n.replace('_', '-')}"
            for n in ("trial", "best", "pareto_rank", "storage")
            if getattr(args, n) is not None
        ]
        if given:
            raise NasError(f"{', '.join(given)}: only with --study")
        if args.rule is not None and args.scale is None:
            raise NasError("--rule needs --scale S")
        if args.scale is not None and not args.scale > 0:
            raise NasError(f"--scale {args.scale}: expected a positive number")


def run(args: argparse.Namespace) -> int:
    from ..export import ExportOptions, VerificationError, export_run, export_trial
    from ..latency import LatencySettings

    _check_arguments(args)
    latency = (
        None
        if args.no_latency
        else LatencySettings(
            device=args.device,
            batch_size=args.batch_size,
            threads=args.threads,
            min_run_time=args.min_run_time,
        )
    )
    options = ExportOptions(out=Path(args.out), fold_bn=not args.no_fold_bn, onnx=args.onnx, latency=latency)
    try:
        if args.run_dir:
            result = export_run(Path(args.run_dir), options)
        elif args.study:
            result = export_trial(
                Path(args.study),
                options,
                trial=args.trial,
                best=args.best,
                pareto_rank=args.pareto_rank,
                storage_url=args.storage,
            )
        else:
            result = _export_reference(args, options)
    except VerificationError as error:
        print(f"nas export: error: {error}", file=sys.stderr)
        return 1
    data = result.as_dict()
    for warning in result.warnings:
        print(f"nas export: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(data)
    else:
        _print(data)
    if not result.passed:
        check = result.verification
        print(
            f"nas export: error: the export does not reproduce the model: max |diff| {check.max_abs_diff:.3g} > "
            f"tolerance {check.tolerance:.3g} (1e-4 x output scale {check.output_scale:.3g}); "
            f"files kept for inspection: {data['out']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _export_reference(args: argparse.Namespace, options: Any) -> Any:
    from ..export import export_reference
    from ..graph.capture import resolve_leaf_types
    from ..models import parse_model_args

    return export_reference(
        args.model,
        options,
        model_kwargs=parse_model_args(args.model_args),
        input_shape=parse_input_shape(args.input) if args.input else None,
        operator=parse_operator(args.op) if args.op else None,
        scale=(args.scale, args.rule or "dWr") if args.scale is not None else None,
        weights=Path(args.weights) if args.weights else None,
        leaf_modules=resolve_leaf_types(args.leaf),
        seed=args.seed,
    )


def _costs_line(costs: dict[str, Any], folded_batchnorms: int) -> str:
    """Flops, MACs, params and acts; with BatchNorm folded, why the flops exceed the study's (its MACs do not)."""
    line = (
        f"flops {costs['flops']:,} ({human(costs['flops'])})  macs {costs['macs']:,}  params {costs['params']:,}  "
        f"acts {costs['acts']:,}"
    )
    if folded_batchnorms:
        line += "  (folding BatchNorm gives convs biases: their additions count as flops, as in pycls)"
    return line


def _print(data: dict[str, Any]) -> None:
    console = console_for_tables()
    meta = data["metadata"]
    if meta["source"] == "study":
        what = f"trial {meta['trial']} of {meta['study']} ({meta['selected_by']})"
    elif meta["source"] == "run":
        what = f"run {meta['run']}"
    else:
        what = meta["model"] + (f" with {meta['operator']['name']}" if meta.get("operator") else "")
    console.print(f"exported {what} -> {data['out']}", highlight=False)
    for key in ("pt2", "onnx"):
        if data.get(key):
            console.print(f"  wrote {data[key]}", highlight=False)
    batchnorm = (
        f"BatchNorm folded into {meta['folded_batchnorms']} convs" if meta["fold_bn"] else "BatchNorm kept"
    )
    console.print(
        f"  TorchScript by {meta['torchscript']}; {meta['collapsed_operators']} operators collapsed; "
        f"{batchnorm}",
        highlight=False,
    )
    console.print(
        f"  costs of the exported graph: {_costs_line(meta['costs'], meta['folded_batchnorms'])}",
        highlight=False,
    )
    if meta.get("preprocessing"):
        console.print(f"  preprocessing: {'; '.join(meta['preprocessing']['steps'])}", highlight=False)
    if "max_abs_diff" in data:
        cases = sorted({case for diffs in data["diffs"].values() for case in diffs})
        verdict = "ok" if data["passed"] else "FAILED"
        console.print(
            f"  verified in a fresh process without nas ({', '.join(data['diffs'])}; {', '.join(cases)} "
            f"inputs): max |diff| {data['max_abs_diff']:.3g}, tolerance {data['tolerance']:.3g}: {verdict}",
            highlight=False,
        )
    if "latency_ms" in data:
        info = data["latency"]["exported"]
        console.print(
            f"  latency {data['latency_ms']['exported']:.3f} ms exported, "
            f"{data['latency_ms']['uncollapsed']:.3f} ms uncollapsed (batch {info['latency_batch_size']}, "
            f"{info['latency_device']})",
            highlight=False,
        )


# -- `nas inspect model.pt` -------------------------------------------------------------------------------
def is_export(reference: str | None) -> bool:
    """Whether ``nas inspect``'s MODEL argument is an exported file rather than a model reference."""
    return bool(reference) and reference.endswith(".pt") and Path(reference).is_file()


def run_inspect(args: argparse.Namespace) -> int:
    """``nas inspect model.pt``: metadata, costs of the exported graph, latency with ``--latency``."""
    from ..export import inspect_export

    latency = latency_settings(args)
    data = inspect_export(Path(args.model), parse_input_shape(args.input) if args.input else None, latency)
    if args.json:
        print_json(data)
        return 0
    console = console_for_tables()
    meta = data["metadata"] or {}
    console.print(f"[bold]{data['file']}[/bold]  input {tuple(data['input_shape'])}", highlight=False)
    for key in (
        "model",
        "space",
        "run",
        "trial",
        "selected_by",
        "candidate",
        "metrics",
        "operator",
        "scale",
        "weights",
        "task",
        "class_names",
        "preprocessing",
        "fold_bn",
        "folded_batchnorms",
        "collapsed_operators",
        "torchscript",
        "versions",
    ):
        if meta.get(key) is not None:
            console.print(f"  {key:20s} {_short(meta[key], key)}", highlight=False)
    if not meta:
        console.print("  no nas.json metadata in this file")
    console.print(
        f"[bold]exported graph[/bold]  params {data['params']:,}   flops {data['flops']:,}   "
        f"macs {data['macs']:,}   acts {data['acts']:,}",
        highlight=False,
    )
    if data["unknown_ops"]:
        ops = ", ".join(f"{op} x{n}" for op, n in data["unknown_ops"].items())
        console.print(f"[yellow]not counted (unknown ops):[/yellow] {ops}")
    if "latency_ms" in data:
        console.print(
            f"latency {data['latency_ms']:.3f} ms (IQR {data['latency_iqr_ms']:.3f} ms, "
            f"{data['latency_runs']} runs, batch {data['latency_batch_size']}, {data['latency_device']})"
        )
    return 0


def _short(value: Any, key: str = "") -> str:
    if key == "candidate" and isinstance(value, dict):
        operators = value.get("operators", {})
        text = f"scale {value.get('scale', 1.0):g}; " + (
            " ".join(
                f"{group}={item['name']}" + (f"({_short(item['params'])})" if item.get("params") else "")
                for group, item in operators.items()
            )
            or "all conv"
        )
    elif key == "preprocessing" and isinstance(value, dict):
        return "; ".join(value.get("steps", [])) + f"; output: {value.get('output')}"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
    elif isinstance(value, list):
        text = ", ".join(map(_short, value))
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return text if len(text) <= 150 else text[:147] + "..."
