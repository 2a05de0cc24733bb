"""The ``synthaug`` console script.

Each subcommand lives in its own module of this package with two functions: ``add_parser(subparsers)``
(argparse only, cheap to import) and ``run(args) -> int`` (imports the heavy parts when called), so
``synthaug --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from synthaug._version import __version__

# subcommand name -> module in synthaug.cli
SUBCOMMANDS = {
    "demo": "synthaug.cli.demo",
    "train": "synthaug.cli.train",
    "sample": "synthaug.cli.sample",
    "data": "synthaug.cli.data",
    "cache": "synthaug.cli.cache",
    "segment": "synthaug.cli.segment",
}


# Raised at the public boundaries with a message that names the argument and the fix.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthaug",
        description="Synthetic H&E image + nuclei-mask pairs for segmentation training.",
    )
    parser.add_argument("--version", action="version", version=f"synthaug {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None) or not hasattr(args, "run"):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as err:
        if args.debug:
            raise
        # A user error says what to change; a traceback would bury that (--debug shows it).
        print(f"synthaug {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
