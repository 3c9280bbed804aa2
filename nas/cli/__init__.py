"""The ``nas`` command line. The only place that parses arguments, prints for humans and picks exit codes.

Exit codes: 0 success; 1 a check failed (e.g. an export that does not reproduce its model); 2 bad input
(one line on stderr naming the file, key, node or value); 130 interrupted. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from ..errors import NasError

# command name -> module under nas.cli with add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "inspect": "inspect_cmd",
    "ops": "ops_cmd",
    "scale": "scale_cmd",
    "search": "search_cmd",
    "train": "train_cmd",
    "validate": "validate_cmd",
    "report": "report_cmd",
    "export": "export_cmd",
    "submit": "submit_cmd",
}

EPILOG = """\
examples:
  nas inspect resnet:ResNet-50                       costs of a built-in model (table)
  nas inspect torchvision.models:resnet50 --json     any model reference; one JSON object
  nas inspect regnet:RegNetY-400MF --op weighted --check   rewrite every eligible conv, verify collapse
  nas inspect --list                                 every built-in family and config
  nas ops                                            the operator library and its parameters

Run `nas COMMAND --help` for a command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas",
        description="Graph-based neural architecture search and scaling for PyTorch CNNs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"nas {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module_name}").add_parser(subparsers)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def one_line(message: str) -> str:
    """An error message as one line: line breaks inside it (from a key or a value) shown escaped."""
    return "\\n".join(message.strip().splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = args.debug or "--debug" in argv
    try:
        return int(args.run(args) or 0)
    except NasError as error:
        if debug:
            traceback.print_exc()
        print(f"nas {args.command}: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure: one line, the traceback with --debug
        if debug:
            traceback.print_exc()
        else:
            print(
                f"nas {args.command}: internal error: {type(error).__name__}: {one_line(str(error))} "
                "(rerun with --debug for the traceback)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
