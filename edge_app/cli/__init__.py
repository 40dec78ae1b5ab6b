"""The command line of ``run.py``: one module per command, each with ``get_args_parser`` and ``main(args)``.

A command module holds ``HELP`` (its one-line description), ``get_args_parser(parser)`` (its options; the
parser is the sub-command's) and ``main(args) -> exit code``; the work lives in the library. Every command
turns a :class:`UserError` into one sentence on stderr and exit code 2 (no traceback), and Ctrl-C into 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge_app.errors import UserError

# The commands in the order `--help` lists them (DESIGN.md's): name -> module of this package.
COMMANDS = ("demo", "train", "export", "calibrate", "build", "live", "annotate", "track", "eval", "bench", "doctor")


def build_parser() -> argparse.ArgumentParser:
    """The ``run.py`` parser with every command of :data:`COMMANDS` as a sub-command."""
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="edge_app: ResNet recognition on TensorRT / ONNX Runtime / PyTorch with an OpenCV frame loop.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.get_args_parser(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process arguments) and run the command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
