"""Counting from track IDs: crossings of a line (in / out per class) and a zone's occupancy and entries.

Both counters follow a track's *anchor*, its box centre, and give each track a stable side (of a line) or
state (inside / outside a zone) that changes only once the anchor is clearly past the boundary: a band of
``hysteresis`` x the box's shorter side (at least ``min_margin`` px) around it changes nothing. A box that
jitters on the line therefore counts once, and an object crossing back counts again (the other way).
Counts are cumulative per source and appear in each frame's JSON line under ``counts`` (keyed by the line's
or zone's name); labels without a track ID are not counted.

Coordinates are frame pixels; :meth:`LineSpec.check_frame` / :meth:`ZoneSpec.check_frame` refuse a shape
outside the frame once its size is known.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edge_app.errors import FieldError
from edge_app.frames.results import Label

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
FORGET_FRAMES = 900  # a track unseen this long is forgotten (30 s at 30 FPS): bounded memory on a live stream


def _split_named(kind: str, text: str, index: int) -> tuple[str, list[float]]:
    """``name=x1,y1,...`` or ``x1,y1,...`` (named ``<kind><index+1>``) -> (name, numbers)."""
    name, sep, coords = text.partition("=")
    if not sep:
        name, coords = f"{kind}{index + 1}", text
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise FieldError(kind, f"'{text}'", "has a bad name; use letters, digits, '_', '-' or '.' before '='")
    try:
        values = [float(v) for v in coords.split(",") if v.strip()]
    except ValueError:
        raise FieldError(kind, f"'{text}'", "must be numbers in frame pixels, e.g. door=100,300,500,300") from None
    return name, values


def _check_points(kind: str, name: str, points: tuple[tuple[float, float], ...], width: int, height: int) -> None:
    for x, y in points:
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise FieldError(
                kind,
                f"'{name}'",
                f"point {x:g},{y:g} is outside the {width}x{height} frame; "
                f"give frame pixels with x in 0-{width - 1} and y in 0-{height - 1}",
            )


@dataclass(frozen=True)
class LineSpec:
    """A named counting line from point 1 to point 2; "in" is a crossing from its left to its right side,
    facing from point 1 to point 2 as drawn on screen (for a line drawn left to right: downwards)."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        if self.x1 == self.x2 and self.y1 == self.y2:
            raise FieldError("line", f"'{self.name}'", "has two equal points; give two different points x1,y1,x2,y2")

    def check_frame(self, width: int, height: int) -> None:
        """Raise a FieldError when a point lies outside a ``width`` x ``height`` frame."""
        _check_points("line", self.name, ((self.x1, self.y1), (self.x2, self.y2)), width, height)


@dataclass(frozen=True)
class ZoneSpec:
    """A named polygon zone (at least 3 points, frame pixels)."""

    name: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise FieldError(
                "zone", f"'{self.name}'", f"has {len(self.points)} points; give at least 3 points x1,y1,x2,y2,x3,y3"
            )
        if abs(cv2.contourArea(np.array(self.points, np.float32))) < 1.0:
            raise FieldError("zone", f"'{self.name}'", "encloses no area; give the corners of a polygon in order")

    def check_frame(self, width: int, height: int) -> None:
        """Raise a FieldError when a point lies outside a ``width`` x ``height`` frame."""
        _check_points("zone", self.name, self.points, width, height)


def parse_line(text: str, index: int = 0) -> LineSpec:
    """``--line`` text: ``name=x1,y1,x2,y2`` (or unnamed: ``line<index+1>``)."""
    name, v = _split_named("line", text, index)
    if len(v) != 4:
        raise FieldError("line", f"'{text}'", f"has {len(v)} numbers; give name=x1,y1,x2,y2 in frame pixels")
    return LineSpec(name, *v)


def parse_zone(text: str, index: int = 0) -> ZoneSpec:
    """``--zone`` text: ``name=x1,y1,x2,y2,x3,y3[,...]`` (or unnamed: ``zone<index+1>``)."""
    name, v = _split_named("zone", text, index)
    if len(v) % 2:
        raise FieldError("zone", f"'{text}'", f"has {len(v)} numbers; give x,y pairs: name=x1,y1,x2,y2,x3,y3")
    return ZoneSpec(name, tuple((v[i], v[i + 1]) for i in range(0, len(v), 2)))


def anchor(box: tuple[float, float, float, float]) -> tuple[float, float]:
    """The point counters follow: the box centre (the ground truth of the tracking set crosses there too)."""
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def margin(box: tuple[float, float, float, float], hysteresis: float, min_margin: float) -> float:
    """Half-width of the band around a boundary where a track keeps its previous side."""
    return max(min_margin, hysteresis * min(box[2] - box[0], box[3] - box[1]))


def _sorted(c: Counter) -> dict[str, int]:
    return {k: c[k] for k in sorted(c)}


@dataclass
class _LineState:
    side: dict[int, int] = field(default_factory=dict)  # track id -> stable side (+1 right, -1 left)
    seen: dict[int, int] = field(default_factory=dict)  # track id -> last frame index
    into: Counter = field(default_factory=Counter)  # class name -> crossings left -> right
    out: Counter = field(default_factory=Counter)


class LineCounter:
    """Crossings of one line per class and direction, from track IDs; a post-label step after a tracker."""

    def __init__(self, line: LineSpec, hysteresis: float = 0.25, min_margin: float = 2.0) -> None:
        self.line = line
        # Band half-width as a fraction of the box's shorter side: 0.25 is a quarter box either side, wider than
        # a detector's centre jitter (a few % of the box) yet narrower than supervision's whole-box rule (0.5),
        # which misses boxes that stop astride the line.
        self.hysteresis = hysteresis
        self.min_margin = min_margin
        dx, dy = line.x2 - line.x1, line.y2 - line.y1
        self._len = math.hypot(dx, dy)
        self._states: dict[int, _LineState] = {}

    @property
    def name(self) -> str:
        """The line's name (its key under ``counts``)."""
        return self.line.name

    def _signed(self, p: tuple[float, float]) -> tuple[float, float]:
        """(signed distance in px, positive on the right; position along the segment, 0..1 inside it)."""
        ln = self.line
        dx, dy = ln.x2 - ln.x1, ln.y2 - ln.y1
        px, py = p[0] - ln.x1, p[1] - ln.y1
        return (dx * py - dy * px) / self._len, (dx * px + dy * py) / self._len**2

    def update(self, source_id: int, frame_index: int, labels: list[Label]) -> list[Label]:
        """Count the tracks whose stable side changed while beside the segment; labels pass unchanged."""
        st = self._states.setdefault(source_id, _LineState())
        for lb in labels:
            if lb.track_id is None or lb.box is None:
                continue
            d, t = self._signed(anchor(lb.box))
            band = margin(lb.box, self.hysteresis, self.min_margin)
            st.seen[lb.track_id] = frame_index
            if abs(d) <= band:
                continue  # on the line: keep the last stable side (jitter here counts nothing)
            side = 1 if d > 0 else -1
            before = st.side.get(lb.track_id)
            st.side[lb.track_id] = side
            if before is not None and before != side and 0.0 <= t <= 1.0:
                (st.into if side > 0 else st.out)[lb.name] += 1
        if len(st.seen) > 256:  # forget long-gone tracks now and then, not every frame
            for tid in [t for t, f in st.seen.items() if frame_index - f > FORGET_FRAMES]:
                st.seen.pop(tid)
                st.side.pop(tid, None)
        return labels

    def reset(self, source_id: int) -> None:
        """Forget ``source_id``'s tracks and counts."""
        self._states.pop(source_id, None)

    def counts(self, source_id: int) -> dict[str, dict[str, int]]:
        """``{"in": {class: n}, "out": {class: n}}`` so far on ``source_id``."""
        st = self._states.get(source_id, _LineState())
        return {"in": _sorted(st.into), "out": _sorted(st.out)}

    def frame_extra(self, source_id: int) -> dict[str, Any]:
        """``{"counts": {name: {"in": ..., "out": ...}}}`` for this frame's JSON line."""
        return {"counts": {self.name: self.counts(source_id)}}


@dataclass
class _ZoneState:
    inside: dict[int, bool] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)
    entered: Counter = field(default_factory=Counter)
    occupancy: Counter = field(default_factory=Counter)  # this frame's


class ZoneCounter:
    """A polygon's occupancy per class in each frame and the entries into it, from track IDs.

    A track first seen inside counts as an entry (it appeared there); a track re-found after a loss with the
    same ID does not enter again unless it was clearly outside in between.
    """

    def __init__(self, zone: ZoneSpec, hysteresis: float = 0.25, min_margin: float = 2.0) -> None:
        self.zone = zone
        self.hysteresis = hysteresis
        self.min_margin = min_margin
        self._contour = np.array(zone.points, np.float32).reshape(-1, 1, 2)
        self._states: dict[int, _ZoneState] = {}

    @property
    def name(self) -> str:
        """The zone's name (its key under ``counts``)."""
        return self.zone.name

    def update(self, source_id: int, frame_index: int, labels: list[Label]) -> list[Label]:
        """Update who is inside and count entries; labels pass unchanged."""
        st = self._states.setdefault(source_id, _ZoneState())
        st.occupancy = Counter()
        for lb in labels:
            if lb.track_id is None or lb.box is None:
                continue
            d = cv2.pointPolygonTest(self._contour, anchor(lb.box), True)  # > 0 inside, in px
            band = margin(lb.box, self.hysteresis, self.min_margin)
            before = st.inside.get(lb.track_id)
            now = before if abs(d) <= band and before is not None else d > 0
            st.inside[lb.track_id] = now
            st.seen[lb.track_id] = frame_index
            if now:
                st.occupancy[lb.name] += 1
                if not before:
                    st.entered[lb.name] += 1
        if len(st.seen) > 256:
            for tid in [t for t, f in st.seen.items() if frame_index - f > FORGET_FRAMES]:
                st.seen.pop(tid)
                st.inside.pop(tid, None)
        return labels

    def reset(self, source_id: int) -> None:
        """Forget ``source_id``'s tracks and counts."""
        self._states.pop(source_id, None)

    def counts(self, source_id: int) -> dict[str, dict[str, int]]:
        """``{"inside": {class: n} this frame, "entered": {class: n} so far}`` on ``source_id``."""
        st = self._states.get(source_id, _ZoneState())
        return {"inside": _sorted(st.occupancy), "entered": _sorted(st.entered)}

    def frame_extra(self, source_id: int) -> dict[str, Any]:
        """``{"counts": {name: {"inside": ..., "entered": ...}}}`` for this frame's JSON line."""
        return {"counts": {self.name: self.counts(source_id)}}


def build_counters(lines: list[str], zones: list[str]) -> list[LineCounter | ZoneCounter]:
    """Counters from ``--line`` / ``--zone`` texts; names must be unique across both (they key ``counts``)."""
    specs: list[LineSpec | ZoneSpec] = [parse_line(t, i) for i, t in enumerate(lines)]
    specs += [parse_zone(t, i) for i, t in enumerate(zones)]
    names = Counter(s.name for s in specs)
    dup = [n for n, k in names.items() if k > 1]
    if dup:
        raise FieldError("line", f"'{dup[0]}'", "names two lines or zones; give each --line and --zone its own name")
    return [LineCounter(s) if isinstance(s, LineSpec) else ZoneCounter(s) for s in specs]
