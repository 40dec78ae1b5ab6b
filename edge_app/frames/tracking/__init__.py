"""Post-label steps: trackers that give labels a ``track_id`` and counters that count them, per source.

``build_tracker("bytetrack")`` / ``build_tracker("iou")`` make a tracker, :class:`LineCounter` and
:class:`ZoneCounter` count from its IDs; the frame loop (and :func:`retrack` offline) runs them in order
through :func:`run_steps`.
"""

from edge_app.frames.tracking.base import (
    CliOption,
    PostLabelStep,
    Tracker,
    TrackerConfig,
    build_tracker,
    cli_options,
    config_from_options,
    get_tracker,
    merge_extras,
    register_tracker,
    run_steps,
    tracker_defaults,
    tracker_names,
)
from edge_app.frames.tracking.counting import LineCounter, LineSpec, ZoneCounter, ZoneSpec, parse_line, parse_zone

__all__ = [
    "CliOption",
    "LineCounter",
    "LineSpec",
    "PostLabelStep",
    "Tracker",
    "TrackerConfig",
    "ZoneCounter",
    "ZoneSpec",
    "build_tracker",
    "cli_options",
    "config_from_options",
    "get_tracker",
    "merge_extras",
    "parse_line",
    "parse_zone",
    "register_tracker",
    "run_steps",
    "tracker_defaults",
    "tracker_names",
]
