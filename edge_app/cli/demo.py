"""``run.py demo``: the whole chain on built-in synthetic data, no arguments needed."""

from __future__ import annotations

import argparse

from edge_app.cli.common import positive_int

HELP = "the whole chain on built-in synthetic data: data, train, export, calibrate, evaluate, annotate, tiles"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `demo` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py demo", description=HELP)
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the demo's own)")
    p.add_argument("--out", default="runs/demo", help="where the demo writes (default runs/demo)")
    return p


def main(a: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    from edge_app.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=a.out)
    if a.epochs:
        cfg.epochs = a.epochs
    run_demo(cfg)
    return 0
