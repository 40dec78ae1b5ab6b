"""``run.py doctor``: what this machine can run, and how to fix what is missing."""

from __future__ import annotations

import argparse

HELP = "what this machine can run (GPU, TensorRT, ONNX Runtime, OpenCV, cameras) and how to fix what is missing"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `doctor` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py doctor", description=HELP)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(a: argparse.Namespace) -> int:
    """Print the checks; returns the exit code."""
    import json

    from edge_app.doctor import as_json, format_report, run_checks

    checks = run_checks()
    print(json.dumps(as_json(checks), indent=2) if a.json else format_report(checks))
    return 0
