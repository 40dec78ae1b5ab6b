"""Flags of the post-label steps shared by ``live``, ``annotate`` and ``track``: a tracker, counting lines and zones.

The tracker's flags come from its registry (:func:`edge_app.frames.tracking.base.cli_options`), so a new tracker
or setting needs no change here; library errors name config fields and are reworded with the flag.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from edge_app.errors import FieldError, UserError


def add_post_label_args(p: argparse.ArgumentParser, mot: bool = True) -> None:
    """``--track NAME`` with its settings, repeatable ``--line`` / ``--zone``, and ``--mot`` (MOTChallenge text)."""
    from edge_app.frames.tracking.base import cli_options

    g = p.add_argument_group("tracking and counting (boxes modes)")
    for opt in cli_options():
        g.add_argument(opt.flag, **opt.argparse_kwargs())
    g.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="[NAME=]X1,Y1,X2,Y2",
        help="count track crossings of this line per class, in and out (frame pixels; repeatable; needs --track)",
    )
    g.add_argument(
        "--zone",
        action="append",
        default=[],
        metavar="[NAME=]X1,Y1,X2,Y2,X3,Y3,...",
        help="count objects inside this polygon per class per frame, and entries (frame pixels; repeatable)",
    )
    if mot:
        g.add_argument("--mot", default=None, metavar="OUT.txt", help="also write the tracks as MOTChallenge text")


@dataclass
class PostLabel:
    """What the flags asked for: the steps in order (tracker first), their drawing, and a description."""

    steps: list[Any] = field(default_factory=list)
    annotators: list[Any] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # what defines the run (for resume checks and reports)

    def reset(self, source_id: int = 0) -> None:
        """Forget a source's state (a new file on the same source)."""
        for s in self.steps:
            s.reset(source_id)
        for a in self.annotators:
            if hasattr(a, "reset"):
                a.reset(source_id)


def post_label_from_args(a: argparse.Namespace, task: str, frame_size: tuple[int, int] | None = None) -> PostLabel:
    """Build the steps the flags ask for; ``task`` is the engine's (only boxes can be tracked or counted).

    ``frame_size`` (width, height), when known, is checked against every line and zone.
    """
    from edge_app.frames.tracking.base import build_tracker, config_from_options, flag_names
    from edge_app.frames.tracking.counting import LineCounter, ZoneCounter, build_counters
    from edge_app.frames.tracking.trails import CountAnnotator, TrackAnnotator

    track = getattr(a, "track", None)
    lines, zones = list(getattr(a, "line", []) or []), list(getattr(a, "zone", []) or [])
    if not track:
        given = [o for o, v in (("--line", lines), ("--zone", zones), ("--mot", getattr(a, "mot", None))) if v]
        if given:
            raise UserError(f"{given[0]} counts and writes track IDs; add --track bytetrack (or --track iou)")
        return PostLabel()
    if task == "classify" and getattr(a, "mode", "classify") == "classify":
        raise UserError(
            "--track needs boxes, but classify mode labels whole frames; use --mode detect (a detector engine) "
            "or --mode tiles"
        )
    try:
        cfg = config_from_options(track, vars(a))
        tracker = build_tracker(track, cfg)
        counters = build_counters(lines, zones)
    except FieldError as e:
        raise e.reworded({**flag_names(), "line": "--line", "zone": "--zone"}) from None
    line_specs = [c.line for c in counters if isinstance(c, LineCounter)]
    zone_specs = [c.zone for c in counters if isinstance(c, ZoneCounter)]
    if frame_size and all(frame_size):
        try:
            for spec in (*line_specs, *zone_specs):
                spec.check_frame(*frame_size)
        except FieldError as e:
            raise e.reworded({"line": "--line", "zone": "--zone"}) from None
    annotators: list[Any] = [TrackAnnotator()]
    if line_specs or zone_specs:
        annotators.append(CountAnnotator(line_specs, zone_specs))
    settings = {"tracker": track, **{k: v for k, v in vars(cfg).items()}, "lines": lines, "zones": zones}
    return PostLabel([tracker, *counters], annotators, settings)
