"""What a run's post-label steps are, as plain values: rebuilt fresh for every file and in every worker process.

A :class:`TrackingSpec` crosses process boundaries (a Ray actor builds the same steps a local run does), and a
fresh :meth:`TrackingSpec.build` per file keeps one video's tracks out of the next.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edge_app.errors import FieldError
from edge_app.frames.tracking.base import TrackerConfig, build_tracker, tracker_names
from edge_app.frames.tracking.counting import LineCounter, ZoneCounter, build_counters
from edge_app.frames.tracking.trails import CountAnnotator, TrackAnnotator


@dataclass(frozen=True)
class TrackingSpec:
    """A tracker (by name, with its settings) and the counting lines and zones (their ``--line``/``--zone`` texts)."""

    tracker: str
    config: TrackerConfig
    lines: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tracker not in tracker_names():
            raise FieldError("tracker", f"'{self.tracker}'", f"is unknown; choose one of {', '.join(tracker_names())}")
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "zones", tuple(self.zones))
        build_counters(list(self.lines), list(self.zones))  # bad lines and zones fail here, once

    def build(self, frame_size: tuple[int, int] | None = None) -> tuple[list[Any], list[Any]]:
        """Fresh steps (tracker first, then counters) and their annotators; lines and zones checked against
        ``frame_size`` (width, height) when it is known."""
        counters = build_counters(list(self.lines), list(self.zones))
        line_specs = [c.line for c in counters if isinstance(c, LineCounter)]
        zone_specs = [c.zone for c in counters if isinstance(c, ZoneCounter)]
        if frame_size and all(frame_size):
            for spec in (*line_specs, *zone_specs):
                spec.check_frame(*frame_size)
        annotators: list[Any] = [TrackAnnotator()]
        if line_specs or zone_specs:
            annotators.append(CountAnnotator(line_specs, zone_specs))
        return [build_tracker(self.tracker, self.config), *counters], annotators

    def settings(self) -> dict[str, Any]:
        """The settings as a plain dict (reports, run records)."""
        return {"tracker": self.tracker, **asdict(self.config), "lines": list(self.lines), "zones": list(self.zones)}
