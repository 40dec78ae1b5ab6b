"""``run.py track``: re-track stored detections (JSON lines of ``live``/``annotate``) without running an engine."""

from __future__ import annotations

import argparse

from edge_app.cli.post_label import add_post_label_args, post_label_from_args

HELP = "re-track the boxes stored in a JSON-lines file (other tracker settings, counting lines/zones) without an engine"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `track` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py track", description=HELP)
    p.add_argument("annotations", help="a JSON-lines file written by live/annotate (detect or tiles mode)")
    p.add_argument("--out", required=True, help="the re-tracked JSON lines (a new file; the input is never changed)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and --mot) when they already exist")
    add_post_label_args(p)  # --track defaults to bytetrack here: re-tracking is the point
    return p


def main(a: argparse.Namespace) -> int:
    """Re-track, print what was written; returns the exit code."""
    from pathlib import Path

    from edge_app.errors import UserError
    from edge_app.frames.tracking.offline import retrack

    for what, path in (("--out", a.out), ("--mot", a.mot)):
        if path and Path(path).exists() and not a.overwrite:
            raise UserError(f"{what} '{path}' already exists; choose a new file or pass --overwrite to replace it")
    a.track = a.track or "bytetrack"
    post = post_label_from_args(a, task="detect", frame_size=None)
    summary = retrack(a.annotations, a.out, post.steps, a.mot)
    print(f"re-tracked {summary.frames} frames with {a.track}: {summary.tracks} tracks")
    for sid, counts in sorted(summary.counts.items()):
        if counts:
            print(f"  source {sid} counts: {counts}")
    print(f"wrote {summary.out}" + (f" and {summary.mot}" if summary.mot else ""))
    return 0
