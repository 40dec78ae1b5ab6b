"""``run.py eval <what>``: every accuracy number, one sub-command per evaluation; the work is in ``edge_app.eval``.

Each sub-command is parse -> one library call -> print its lines -> exit code. The library names fields in
its errors; the flags here re-word them.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

from edge_app.cli.common import backend_args, config_for_mode, mode_args, positive_int
from edge_app.errors import FieldError, UserError
from edge_app.frames.labellers import ModeOption

HELP = "accuracy numbers: held-out detector mAP, detect vs tiles, tiles boxes on a video, trackers"

# Tiles settings that only an evaluation sweeps (live/annotate keep their measured defaults).
TILES_TUNING = (
    ModeOption("--box-scale", "box_scale", "a positive tile's box as a fraction of its side", float, "F"),
    ModeOption("--votes", "min_votes", "overlapping tiles that must agree on a box", int, "N"),
    ModeOption("--overlap", "min_overlap", "minimum overlap of neighbouring tiles", float, "F"),
)


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The sub-commands of `eval` (added to ``p``, the sub-command's parser, or to a new one)."""
    p = p or argparse.ArgumentParser(prog="run.py eval", description=HELP)
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    for name, help_, add, run in (
        ("heldout", "mAP of every model file of a detector engine on the held-out sets, and its 720p CPU speed",
         _heldout_args, _heldout),
        ("modes", "detect against tiles on the same held-out 720p frames: mAP, P/R and ms per frame",
         _modes_args, _modes),
        ("boxes", "tiles mode's boxes on a video scored against its ground truth (the demo's synthetic video)",
         _boxes_args, _boxes),
        ("track", "trackers on the held-out tracking video: MOTA, IDF1, HOTA, ID switches, line counts, cost",
         _track_args, _track),
    ):  # fmt: skip
        sp = sub.add_parser(name, help=help_, description=help_)
        add(sp)
        sp.set_defaults(eval_run=run)
    return p


def main(a: argparse.Namespace) -> int:
    """Run the evaluation the sub-command names; returns the exit code."""
    run: Callable[[argparse.Namespace], int] | None = getattr(a, "eval_run", None)
    if run is None:
        raise UserError("name what to evaluate: run.py eval heldout|modes|boxes|track (see run.py eval --help)")
    return run(a)


# ------------------------------------------------------------------------------------------------ heldout
def _heldout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", required=True, help="detector engine folder (export + calibrate), e.g. engines/det30")
    p.add_argument("--scenes", type=positive_int, default=500, help="held-out scenes (default 500)")
    p.add_argument("--frames", type=positive_int, default=60, help="held-out video frames, every 5th (default 60)")
    p.add_argument("--no-speed", action="store_true", help="skip the 720p fp32-vs-INT8 CPU timing")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the numbers here")


def _heldout(a: argparse.Namespace) -> int:
    from edge_app.eval.heldout import format_heldout, run_heldout

    run = run_heldout(a.engine, a.scenes, a.frames, speed=not a.no_speed, json_out=a.json)
    _print(format_heldout(run.report, run.speed))
    if a.json:
        print(f"wrote {a.json}")
    return 0


# ------------------------------------------------------------------------------------------------ modes
def _modes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", default="engines/demo-det", help="detector engine (default engines/demo-det)")
    p.add_argument("--classifier", default="engines/demo", help="classifier engine for tiles (default engines/demo)")
    p.add_argument("--frames", type=int, default=60, help="held-out frames (every 5th of the video; default 60)")
    backend_args(p)
    mode_args(p, "tiles")


def _modes(a: argparse.Namespace) -> int:
    from edge_app.eval.modes import format_modes, run_modes

    tiles = config_for_mode(a, "tiles")
    try:
        scores = run_modes(a.detector, a.classifier, a.frames, a.backend, a.precision, tiles)  # type: ignore[arg-type]
    except FieldError as e:
        raise e.reworded({"frames": "--frames"}) from None
    _print(format_modes(scores))
    return 0


# ------------------------------------------------------------------------------------------------ boxes
def _boxes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="engines/demo", help="classifier engine for tiles (default engines/demo)")
    p.add_argument(
        "--video",
        default="data/synthetic_video.mp4",
        help="the video to label (default data/synthetic_video.mp4, written by `run.py demo`)",
    )
    p.add_argument("--truth", default=None, help="its ground truth JSON lines (default <video stem>.truth.jsonl)")
    mode_args(p, "tiles", TILES_TUNING)
    p.add_argument("--no-merge", action="store_true", help="keep each tile's box (no averaging before NMS)")
    p.add_argument(
        "--match-iou", type=float, default=0.3, help="IoU a box needs to count as found (default %(default)s)"
    )
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (default 0: all)")
    p.add_argument("--stride", type=positive_int, default=1, help="label every Nth frame (default 1)")
    backend_args(p)


def _boxes(a: argparse.Namespace) -> int:
    from edge_app.eval.boxes import format_boxes, run_boxes

    tiles = config_for_mode(a, "tiles", TILES_TUNING)
    if a.no_merge:
        tiles = dataclasses.replace(tiles, merge=False)
    r = run_boxes(
        a.engine,
        a.video,
        a.truth,
        tiles,  # type: ignore[arg-type]
        a.match_iou,
        a.max_frames,
        a.stride,
        a.backend,
        a.precision,
    )
    _print(format_boxes(r))
    return 0


# ------------------------------------------------------------------------------------------------ track
def _track_args(p: argparse.ArgumentParser) -> None:
    from edge_app.eval.track import DEFAULT_TRACKERS, RECIPES

    p.add_argument("--recipe", default="heldout", help=f"tracking video: {' or '.join(RECIPES)} (default %(default)s)")
    p.add_argument(
        "--detections",
        default=None,
        metavar="JSONL",
        help="also score the trackers on a detector's boxes: the JSON lines `annotate --mode detect` wrote for "
        "the tracking video",
    )
    p.add_argument(
        "--trackers",
        default=",".join(DEFAULT_TRACKERS),
        help="comma-separated trackers to compare (default %(default)s)",
    )
    p.add_argument("--out", default=None, help="folder for the MOT files and gt.txt (default: a temporary folder)")
    p.add_argument("--no-bench", action="store_true", help="skip timing each tracker")


def _track(a: argparse.Namespace) -> int:
    from edge_app.eval.track import format_track_eval, run_track_eval

    trackers = tuple(t.strip() for t in a.trackers.split(",") if t.strip())
    if not trackers:
        raise UserError(f"--trackers '{a.trackers}' names no tracker; e.g. --trackers bytetrack,iou")
    result = run_track_eval(a.recipe, a.detections, trackers, out_dir=a.out, bench=not a.no_bench)
    _print(format_track_eval(result))
    return 0


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)
