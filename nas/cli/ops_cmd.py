"""``nas ops``: the operator library, its parameters, ranges and defaults."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

import operators

from .common import console_for_tables, print_json

EXAMPLES = """\
examples:
  nas ops
  nas ops --json
  nas inspect vgg:VGG-16-cifar --op weighted:density=0.8 --check    use one on a model
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ops",
        help="list the operators of the search space with their parameters",
        description="Every operator is a training-time parameterization of a conv that collapses to one plain conv.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def describe_operators() -> dict:
    out = {}
    for name in operators.names():
        cls = operators.get(name)
        out[name] = dict(
            summary=cls.summary,
            class_name=f"{cls.__module__}.{cls.__qualname__}",
            params=[p.describe() for p in cls.params],
        )
    return out


def run(args: argparse.Namespace) -> int:
    data = describe_operators()
    if args.json:
        print_json(data)
        return 0
    table = Table(title="operators", show_lines=True)
    for column in ("name", "what it is", "parameters (type, range/choices, default)"):
        table.add_column(column)
    for name, entry in data.items():
        params = "\n".join(_describe_param(p) for p in entry["params"]) or "-"
        # text, not rich markup: weighted's summary holds "a = [d..., 1, ...d]"
        table.add_row(name, escape(entry["summary"]), escape(params))
    console_for_tables().print(table)
    return 0


def _describe_param(param: dict) -> str:
    if param["type"] in ("int", "float"):
        domain = f"[{param['low']}, {param['high']}]" + (" log" if param.get("log") else "")
    elif param["type"] == "categorical":
        domain = "{" + ", ".join(map(str, param["choices"])) + "}"
    else:
        domain = "true/false"
    return f"{param['name']}: {param['type']} {domain}, default {param['default']}"
