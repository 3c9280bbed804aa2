"""``nas validate``: check a space file without running it."""

from __future__ import annotations

import argparse

from .common import print_json
from .search_cmd import space_overrides

EXAMPLES = """\
examples:
  nas validate convops.yaml
  nas validate my_space.yaml --set train.epochs=1 --json
  nas validate my_space.yaml --no-data        (skip loading the dataset)

Problems are reported as one line, FILE:LINE: key.path: problem, with exit code 2.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a space file: schema, model, operators, data",
        description="Validate a space: the schema, the model reference (built and captured), the operator choices "
        "per conv group, and the dataset.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("space_arg", metavar="SPACE", nargs="?", help="a space file or built-in space name")
    parser.add_argument("--space", dest="space_opt", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--no-data", action="store_true", help="do not load the dataset")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import NasError
    from ..search.sampling import SearchPlan
    from ..space import load_space

    name = args.space_arg or args.space_opt
    if not name:
        raise NasError("a SPACE is required (e.g. nas validate convops.yaml)")
    space = load_space(name, space_overrides(args))
    data_shape = None
    summary = {"space": space.name, "file": space.source}
    if not args.no_data:
        from ..data import DataConfig, load_data

        config = DataConfig(
            space.data.name,
            space.data.root,
            space.data.val_fraction,
            space.data.seed,
            dict(space.data.options),
        )
        _, _, info = load_data(config, tuple(space.model.input) if space.model.input else None)
        data_shape = info.input_shape
        summary["data"] = {
            "task": info.task,
            "train": info.train_size,
            "val": info.val_size,
            "input_shape": list(info.input_shape),
        }
    plan = SearchPlan.from_space(space, data_shape)
    summary.update(
        groups={g: list(ops) for g, ops in plan.groups.items()},
        scales=list(plan.scales),
        objectives=[f"{o.metric} ({o.direction})" for o in space.objectives],
        trials=space.search.trials,
    )
    if args.json:
        print_json(summary)
    else:
        print(f"{space.source}: OK")
        for key, value in summary.items():
            print(f"  {key}: {value}")
    return 0
