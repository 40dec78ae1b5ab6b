"""What one run of the frame loop did: frame counts, per-stage and end-to-end latency, and the same per source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceReport:
    """One source of a run: its own frame counts, frame rate and end-to-end latency (ms percentiles)."""

    source_id: int
    name: str
    frames_read: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    frames_failed: int = 0  # frames the source could not decode
    reconnects: int = 0
    fps: float = 0.0  # frames written per second of the run
    end_to_end_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return {
            "source_id": self.source_id,
            "name": self.name,
            "frames_read": self.frames_read,
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped,
            "frames_failed": self.frames_failed,
            "reconnects": self.reconnects,
            "fps": self.fps,
            "end_to_end_ms": self.end_to_end_ms,
        }

    def line(self) -> str:
        """One terminal line."""
        e = self.end_to_end_ms
        return (
            f"  source {self.source_id} {self.name}: {self.frames_written} written, {self.frames_dropped} dropped, "
            f"{self.frames_failed} failed, {self.fps:.1f} FPS, end-to-end p50 {e.get('p50', float('nan')):.1f} ms "
            f"p99 {e.get('p99', float('nan')):.1f} ms" + (f", {self.reconnects} reconnects" if self.reconnects else "")
        )


@dataclass
class PipelineReport:
    """What one run did: frame counts, per-stage and end-to-end latency percentiles (ms), throughput."""

    frames_read: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    frames_failed: int = 0  # frames the source could not decode
    seconds: float = 0.0
    stopped_by: str = ""  # end, max_frames, duration, key, stop, interrupt, error
    mode: str = "classify"
    batch: int = 1
    engine: str = ""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    end_to_end_ms: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0
    sources: list[SourceReport] = field(default_factory=list)  # one per source, in source order

    @property
    def throughput_fps(self) -> float:
        """Frames written per second of wall time."""
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return {
            "frames_read": self.frames_read,
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped,
            "frames_failed": self.frames_failed,
            "seconds": self.seconds,
            "throughput_fps": self.throughput_fps,
            "stopped_by": self.stopped_by,
            "mode": self.mode,
            "batch": self.batch,
            "engine": self.engine,
            "stages_ms": self.stages,
            "end_to_end_ms": self.end_to_end_ms,
            "reconnects": self.reconnects,
            "sources": [s.to_dict() for s in self.sources],
        }

    def summary(self) -> str:
        """Two lines for the terminal, and one per source when there are several."""
        e = self.end_to_end_ms
        per_source = "".join("\n" + s.line() for s in self.sources) if len(self.sources) > 1 else ""
        return (
            f"{self.frames_read} frames read, {self.frames_written} written, {self.frames_dropped} dropped, "
            f"{self.frames_failed} failed to decode in {self.seconds:.1f}s ({self.throughput_fps:.1f} frames/s, stopped by {self.stopped_by})\n"
            f"end-to-end latency p50 {e.get('p50', float('nan')):.1f} ms  p99 {e.get('p99', float('nan')):.1f} ms"
            + per_source
        )
