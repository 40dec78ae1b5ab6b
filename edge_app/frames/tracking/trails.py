"""Annotators for tracked labels: the ID beside each box with a short trail, and the counting lines/zones.

Settings in ``__init__``, ``annotate(frame, result) -> frame`` drawing in place (supervision's
``TraceAnnotator`` / ``LineZoneAnnotator`` habit; sizes scale with the frame height as in
:mod:`edge_app.frames.overlay`). :class:`TrackAnnotator` remembers each track's recent centres per source, so
one instance serves a multi-source loop.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import cv2
import numpy as np

from edge_app.frames.overlay import FONT, class_colour, put_text_box, text_scale
from edge_app.frames.results import FrameResult
from edge_app.frames.tracking.counting import LineSpec, ZoneSpec, anchor


class TrackAnnotator:
    """``#id`` on a tab under each tracked box and a fading trail of its last ``trail_length`` centres."""

    def __init__(self, trail_length: int = 30, thickness: float = 2.0, forget_after: int = 60) -> None:
        self.trail_length = trail_length  # 1 s at 30 FPS: shows the direction without cluttering the frame
        self.thickness = thickness  # at 720p; scaled with frame height
        self.forget_after = forget_after  # frames a vanished track's trail is kept (it may be re-found)
        self._trails: dict[tuple[int, int], deque[tuple[int, int]]] = {}
        self._seen: dict[tuple[int, int], int] = {}

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw the trail and ID of every label with a track ID."""
        src = result.source_id or 0
        s = text_scale(frame) * 0.7
        t = max(1, round(self.thickness * frame.shape[0] / 720))
        for lab in result.labels:
            if lab.track_id is None or lab.box is None:
                continue
            key = (src, lab.track_id)
            trail = self._trails.setdefault(key, deque(maxlen=self.trail_length))
            cx, cy = anchor(lab.box)
            trail.append((int(round(cx)), int(round(cy))))
            self._seen[key] = result.index
            col = class_colour(lab.class_id)
            pts = list(trail)
            for i in range(1, len(pts)):  # older segments thinner: the direction reads at a glance
                w = max(1, round(t * (i / len(pts))))
                cv2.line(frame, pts[i - 1], pts[i], col, w, cv2.LINE_AA)
            x1, _, _, y2 = (int(round(v)) for v in lab.box)
            put_text_box(frame, f"#{lab.track_id}", (x1, y2 + 1), s, bg=col)
        for key in [k for k, f in self._seen.items() if k[0] == src and result.index - f > self.forget_after]:
            self._seen.pop(key)
            self._trails.pop(key, None)
        return frame

    def reset(self, source_id: int) -> None:
        """Forget the trails of ``source_id`` (a new video there)."""
        for key in [k for k in self._trails if k[0] == source_id]:
            self._trails.pop(key)
            self._seen.pop(key, None)


class CountAnnotator:
    """The counting lines and zones with their counts (from ``result.extra["counts"]``) in the top-right corner."""

    def __init__(self, lines: Sequence[LineSpec] = (), zones: Sequence[ZoneSpec] = ()) -> None:
        self.lines = list(lines)
        self.zones = list(zones)

    def text_lines(self, result: FrameResult) -> list[str]:
        """The count lines shown for this frame ("door in 3 out 1", "dock inside 2 entered 5")."""
        counts = result.extra.get("counts", {})
        out = []
        for ln in self.lines:
            c = counts.get(ln.name, {})
            out.append(f"{ln.name} in {sum(c.get('in', {}).values())} out {sum(c.get('out', {}).values())}")
        for zn in self.zones:
            c = counts.get(zn.name, {})
            out.append(
                f"{zn.name} inside {sum(c.get('inside', {}).values())} entered {sum(c.get('entered', {}).values())}"
            )
        return out

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw lines and zones, then their counts."""
        t = max(1, round(2 * frame.shape[0] / 720))
        for ln in self.lines:
            p1, p2 = (int(ln.x1), int(ln.y1)), (int(ln.x2), int(ln.y2))
            cv2.line(frame, p1, p2, (255, 255, 255), t + 1, cv2.LINE_AA)
            cv2.line(frame, p1, p2, (0, 200, 255), t, cv2.LINE_AA)
        for zn in self.zones:
            pts = np.array(zn.points, np.int32).reshape(-1, 1, 2)
            cv2.polylines(frame, [pts], True, (255, 200, 0), t, cv2.LINE_AA)
        s = text_scale(frame) * 0.75
        y = round(8 * s)
        for text in self.text_lines(result):
            (w, _), _ = cv2.getTextSize(text, FONT, s, max(1, round(s * 2)))
            y += put_text_box(frame, text, (frame.shape[1] - w - round(16 * s), y), s)
        return frame
