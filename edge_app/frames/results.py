"""The typed result that flows from a labelling mode to post-label steps, annotators and sinks.

``Label`` is one recognised thing; ``FrameResult`` is everything known about one frame. Both validate on
creation and round-trip through JSON lines: optional fields (a track id, a source id, a media time) are
written only when set, so files written before they existed read back unchanged and byte-equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Label:
    """One recognised thing: class, confidence, a box x1,y1,x2,y2 in frame pixels (boxes modes), a track id."""

    class_id: int
    name: str
    score: float
    box: tuple[float, float, float, float] | None = None
    track_id: int | None = None  # set by a tracker (post-label step); None: not tracked

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0 + 1e-6:
            raise ValueError(f"score must be in [0, 1], got {self.score}")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not (x2 >= x1 and y2 >= y1):
                raise ValueError(f"box must be x1,y1,x2,y2 with x2>=x1 and y2>=y1, got {self.box}")
        if self.track_id is not None and self.track_id < 0:
            raise ValueError(f"track id must be >= 0, got {self.track_id}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"class_id": self.class_id, "class": self.name, "score": round(self.score, 5)}
        if self.box is not None:
            d["box"] = [round(float(v), 1) for v in self.box]
        if self.track_id is not None:
            d["track_id"] = self.track_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Label:
        """Inverse of :meth:`to_dict`; raises KeyError/ValueError/TypeError if malformed."""
        box = d.get("box")
        track = d.get("track_id")
        return cls(
            int(d["class_id"]),
            str(d["class"]),
            float(d["score"]),
            tuple(float(v) for v in box) if box else None,  # type: ignore[arg-type]
            int(track) if track is not None else None,
        )


@dataclass
class FrameResult:
    """Everything known about one frame after labelling; validated on creation."""

    index: int  # frames read from this source so far (gaps show drops)
    capture_time: float  # time.monotonic() when the frame was read
    labels: list[Label] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    source_id: int | None = None  # which source of a multi-source loop; None: the only one
    media_time: float | None = None  # seconds into a file (its presentation time); None: live or unknown
    extra: dict[str, Any] = field(default_factory=dict)  # post-label steps' per-frame output (e.g. counts)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"frame index must be >= 0, got {self.index}")
        if self.source_id is not None and self.source_id < 0:
            raise ValueError(f"source id must be >= 0, got {self.source_id}")
        for k, v in self.timings.items():
            if not v >= 0:
                raise ValueError(f"stage timing '{k}' must be >= 0 ms, got {v}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.source_id is not None:
            d["source_id"] = self.source_id
        d["frame"] = self.index
        if self.media_time is not None:
            d["media_time"] = round(self.media_time, 6)
        d["capture_time"] = round(self.capture_time, 6)
        d["labels"] = [lab.to_dict() for lab in self.labels]
        d.update(self.extra)
        d["timings_ms"] = {k: round(v, 3) for k, v in self.timings.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameResult:
        """Inverse of :meth:`to_dict` (a JSON line of ``live``/``annotate``); raises KeyError/ValueError if malformed."""
        known = {"source_id", "frame", "media_time", "capture_time", "labels", "timings_ms"}
        return cls(
            int(d["frame"]),
            float(d["capture_time"]),
            [Label.from_dict(lb) for lb in d["labels"]],
            {str(k): float(v) for k, v in d.get("timings_ms", {}).items()},
            source_id=int(d["source_id"]) if d.get("source_id") is not None else None,
            media_time=float(d["media_time"]) if d.get("media_time") is not None else None,
            extra={k: v for k, v in d.items() if k not in known},
        )
