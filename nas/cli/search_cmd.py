"""``nas search``: the main job."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..extras import require

EXAMPLES = """\
examples:
  nas search --space convops.yaml                       the default space (bundled digits data)
  nas search --space convops.yaml --trials 40 --set train.epochs=3
  nas search --space my_space.yaml --study-dir runs/exp1
  nas search --space convops.yaml --storage postgresql://user@host/db
  nas search --space convops.yaml --backend ray          the same search on Ray (local instance or --address)

Running the same command again resumes the study: finished trials are kept, trials interrupted by a crash or
Ctrl-C are retried. Results: nas report --study studies/<name>; the winner: nas export --study studies/<name>.
"""


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        required=True,
        metavar="SPACE",
        help="a space file, or the name of a built-in space (convops.yaml, dncnn_denoise.yaml, ...)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any key of the space, repeatable (e.g. --set train.epochs=1)",
    )
    parser.add_argument("--trials", type=int, help="number of trials (= --set search.trials=N)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")


def space_overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if getattr(args, "trials", None) is not None:
        overrides.append(f"search.trials={args.trials}")
    if getattr(args, "timeout", None) is not None:
        overrides.append(f"search.timeout={args.timeout}")
    return overrides


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search a space: rewrite, scale, train and measure candidates with Optuna",
        description="Run the search a space file describes and write the study to a directory.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_space_arguments(parser)
    parser.add_argument(
        "--study-dir", metavar="DIR", help="where the study lives (default: studies/<space name>)"
    )
    parser.add_argument(
        "--storage", metavar="URL", help="an Optuna storage URL (default: a journal file in the study dir)"
    )
    parser.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="where trials run (default: local)"
    )
    parser.add_argument(
        "--address", help="Ray cluster address for --backend ray (default: start a local instance)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the final report")
    parser.add_argument("--no-plots", action="store_true", help="do not write plots at the end")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..search.progress import SearchProgress
    from ..search.report import study_report, write_plots
    from ..search.study import default_study_dir
    from ..space import load_space
    from .report_cmd import print_report

    if args.backend == "ray":
        require("ray", "nas search --backend ray")
    space = load_space(args.space, space_overrides(args))
    study_dir = Path(args.study_dir) if args.study_dir else default_study_dir(space)
    progress = SearchProgress(space.name, [o.metric for o in space.objectives], quiet=args.quiet)
    if args.backend == "ray":
        from ..search.ray_backend import run_ray

        study = run_ray(space, study_dir, progress, args.storage, args.address)
    else:
        from ..search.local import run_local

        study = run_local(space, study_dir, progress, args.storage)
    plots = [] if args.no_plots else write_plots(space, study, study_dir)
    print_report(study_report(space, study), plots)
    print(
        f"study directory: {study_dir}   (nas report --study {study_dir}; nas export --study {study_dir} --out best.pt)"
    )
    return 0
