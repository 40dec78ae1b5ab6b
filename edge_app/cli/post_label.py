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
    """What the flags asked for: the steps in order (tracker first), their drawing, and the spec that rebuilds them."""

    steps: list[Any] = field(default_factory=list)
    annotators: list[Any] = field(default_factory=list)
    spec: Any = None  # a TrackingSpec (None: no tracking), picklable: a Ray worker rebuilds the same steps

    @property
    def settings(self) -> dict[str, Any]:
        """What defines the steps (reports)."""
        return self.spec.settings() if self.spec is not None else {}


def post_label_from_args(a: argparse.Namespace, task: str, frame_size: tuple[int, int] | None = None) -> PostLabel:
    """Build the steps the flags ask for; ``task`` is the engine's (only boxes can be tracked or counted).

    ``frame_size`` (width, height), when known, is checked against every line and zone.
    """
    from edge_app.frames.tracking.base import config_from_options, flag_names
    from edge_app.frames.tracking.spec import TrackingSpec

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
    names = {**flag_names(), "line": "--line", "zone": "--zone", "tracker": "--track"}
    try:
        spec = TrackingSpec(track, config_from_options(track, vars(a)), tuple(lines), tuple(zones))
        steps, annotators = spec.build(frame_size)
    except FieldError as e:
        raise e.reworded(names) from None
    return PostLabel(steps, annotators, spec)
