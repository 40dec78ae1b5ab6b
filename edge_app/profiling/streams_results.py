"""The records of the streams bench (:mod:`edge_app.profiling.streams`): its frozen config, one row per way and
stream count, the stalled-source result, the whole report, and the lines they print as.

A row is computed from per-stream records (frame index, capture time, end-to-end ms) over a measured window:
FPS = frames whose capture time falls in the window / its length; drops = gaps in those frames' indices (an index
counts frames read, so a gap is a frame dropped); end-to-end percentiles pooled over every stream's frames.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from edge_app.errors import FieldError, shown

WAYS = ("batched", "processes")
Rec = tuple[int, float, float]  # frame index, capture time (monotonic s), end-to-end ms


@dataclass(frozen=True)
class StreamsConfig:
    """One streams bench; frozen and validated on creation (a bad value names its field)."""

    engine: str
    mode: str = "classify"
    backend: str = "auto"
    precision: str = "auto"
    source: str = "synthetic"  # every stream opens this; synthetic ones get seed=1..N so no two are alike
    width: int = 1280  # 720p30: the sources of NVIDIA's and the tables
    height: int = 720
    fps: float = 30.0
    seconds: float = 10.0  # the measured window of each run, after the warm-up
    warmup: float = 3.0  # after every stream has written its first frame: engines, caches and queues settle
    steps: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    hold_ratio: float = 0.95  # a run holds the rate when every stream reaches this share of it, with 0 drops
    stall_s: float = 5.0  # how long the stalled source of measure_stall delivers nothing
    jsonl: bool = True  # the batched loop writes JSON lines too, as each process does: the same output cost
    grace_s: float = 1.0  # after the window, so frames captured in it are written before the stop
    start_timeout_s: float = 180.0  # N processes importing and compiling at once on 2 cores take a while

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 16:
                raise FieldError(name, shown(v), "must be a whole number of pixels, at least 16; e.g. 1280x720")
        for name, what in (("fps", "frame rate such as 30"), ("seconds", "number of seconds such as 10"),
                           ("start_timeout_s", "number of seconds")):  # fmt: skip
            if not getattr(self, name) > 0:
                raise FieldError(name, shown(getattr(self, name)), f"must be a positive {what}")
        for name in ("warmup", "grace_s", "stall_s"):
            if not getattr(self, name) >= 0:
                raise FieldError(name, shown(getattr(self, name)), "must be 0 or more seconds")
        if not 0 < self.hold_ratio <= 1:
            raise FieldError("hold_ratio", shown(self.hold_ratio), "must be in (0, 1]; e.g. 0.95")
        steps = tuple(self.steps)
        if not steps or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in steps):
            raise FieldError("steps", shown(steps), "must be stream counts of 1 or more; e.g. 1,2,3,4,6,8")
        if list(steps) != sorted(set(steps)):
            raise FieldError("steps", shown(steps), "must rise without repeats; e.g. 1,2,3,4,6,8")
        object.__setattr__(self, "steps", steps)

    @property
    def fields(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def stream_uri(source: str, i: int) -> str:
    """Stream ``i``'s URI: a synthetic source gets its own seed (i + 1) unless the URI names one."""
    if not source.startswith("synthetic") or "seed=" in source:
        return source
    return f"{source}{'&' if '?' in source else '?'}seed={i + 1}"


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class StreamsRow:
    """One way at one stream count, over its measured window."""

    way: str  # "batched": one loop, one engine call per batch; "processes": N `live` processes at batch 1
    streams: int
    batch: int
    seconds: float  # length of the measured window
    rate: float  # the sources' frame rate
    hold_ratio: float
    fps: tuple[float, ...]  # per stream: frames written per second of the window
    drops: tuple[int, ...]  # per stream: gaps in the frame indices written in the window
    e2e_p50_ms: float  # pooled over every stream's frames in the window
    e2e_p99_ms: float
    cpu_pct: float  # CPU time over the window / its length x 100 (one core = 100)
    cpu_of: str  # whose CPU: "1 process" or "N processes"

    @property
    def fps_min(self) -> float:
        return min(self.fps) if self.fps else 0.0

    @property
    def fps_median(self) -> float:
        return statistics.median(self.fps) if self.fps else 0.0

    @property
    def drops_total(self) -> int:
        return sum(self.drops)

    @property
    def drops_max(self) -> int:
        return max(self.drops, default=0)

    @property
    def holds(self) -> bool:
        """Every stream at ``hold_ratio`` x the sources' rate or more, and no frame dropped."""
        return len(self.fps) == self.streams and self.fps_min >= self.hold_ratio * self.rate and self.drops_total == 0

    def to_dict(self) -> dict[str, Any]:
        """bench JSON entry (with the derived columns)."""
        d = asdict(self)
        d.update(fps_min=self.fps_min, fps_median=self.fps_median, drops_total=self.drops_total, holds=self.holds)
        return d


@dataclass(frozen=True)
class StallResult:
    """N batched streams, one of which delivered nothing for ``stalled_s``: how the others' FPS moved."""

    streams: int
    stalled_s: float  # measured: from the stalled source's last frame handed over to its next
    others_fps_outside: float  # mean FPS of the other streams in the window outside the stall
    others_fps_during: float  # the same during the stall
    worst_drop_pct: float  # the other stream whose FPS fell most: (1 - during / outside) x 100
    stalled_frames_after: int  # frames the stalled source delivered after it came back
    limit_pct: float = 5.0

    @property
    def ok(self) -> bool:
        return self.worst_drop_pct <= self.limit_pct and self.stalled_frames_after > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class StreamsBenchReport:
    """Both ways, every stream count tried, the largest N each held, and the stalled-source check."""

    config: StreamsConfig
    engine: str  # the engine's own description (runtime, precision, file)
    machine: str
    rows: tuple[StreamsRow, ...]
    stall: StallResult | None = None

    def held(self, way: str) -> int:
        """The largest N ``way`` held (0: not even one stream)."""
        return max((r.streams for r in self.rows if r.way == way and r.holds), default=0)

    def capped(self, way: str) -> bool:
        """True when ``way`` held the largest N tried: its limit is beyond the steps."""
        rows = [r for r in self.rows if r.way == way]
        return bool(rows) and all(r.holds for r in rows) and rows[-1].streams == self.config.steps[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.fields,
            "engine": self.engine,
            "machine": self.machine,
            "rows": [r.to_dict() for r in self.rows],
            "held": {w: self.held(w) for w in WAYS},
            "stall": self.stall.to_dict() if self.stall else None,
        }


def window_stats(
    per_stream: Sequence[Sequence[Rec]], t0: float, t1: float
) -> tuple[list[float], list[int], list[float]]:
    """Per stream FPS and drops, and every e2e sample, of the records whose capture time is in [t0, t1)."""
    fps, drops, e2e = [], [], []
    span = max(t1 - t0, 1e-9)
    for recs in per_stream:
        inside = sorted((r for r in recs if t0 <= r[1] < t1), key=lambda r: r[0])
        fps.append(len(inside) / span)
        drops.append(inside[-1][0] - inside[0][0] + 1 - len(inside) if inside else 0)
        e2e.extend(r[2] for r in inside)
    return fps, drops, e2e


def make_row(
    way: str, per_stream: Sequence[Sequence[Rec]], t0: float, t1: float, cpu_s: float, cfg: StreamsConfig, batch: int
) -> StreamsRow:
    """The row of one run from its records, its window and the CPU seconds spent in it."""
    fps, drops, e2e = window_stats(per_stream, t0, t1)
    p50, p99 = (float(v) for v in np.percentile(e2e, [50, 99])) if e2e else (float("nan"),) * 2
    n = len(per_stream)
    return StreamsRow(
        way=way,
        streams=n,
        batch=batch,
        seconds=t1 - t0,
        rate=cfg.fps,
        hold_ratio=cfg.hold_ratio,
        fps=tuple(fps),
        drops=tuple(drops),
        e2e_p50_ms=p50,
        e2e_p99_ms=p99,
        cpu_pct=100.0 * cpu_s / max(t1 - t0, 1e-9),
        cpu_of="1 process" if way == "batched" else f"{n} process{'es' if n > 1 else ''}",
    )


# --------------------------------------------------------------------------------------------- lines
def format_row(r: StreamsRow) -> str:
    """One Markdown table row."""
    return (
        f"| {r.way} | {r.streams} | {r.batch} | {r.fps_min:.1f} / {r.fps_median:.1f} | {r.drops_total} / {r.drops_max} "
        f"| {r.e2e_p50_ms:.1f} / {r.e2e_p99_ms:.1f} | {r.cpu_pct:.0f} ({r.cpu_of}) | {'yes' if r.holds else 'no'} |"
    )


def format_table(rows: Sequence[StreamsRow]) -> list[str]:
    """The KPI table: both ways at each N, in the order measured."""
    return [
        "| way | streams | batch | FPS per stream min / median | drops total / per stream max "
        "| e2e p50 / p99 ms | CPU % (100 = one core; whose) | holds |",
        "|---|---|---|---|---|---|---|---|",
        *(format_row(r) for r in rows),
    ]


def format_stall(s: StallResult) -> str:
    """One sentence on the stalled-source check."""
    return (
        f"stalled source: {s.streams} streams, one delivered nothing for {s.stalled_s:.1f} s; the others ran "
        f"{s.others_fps_outside:.1f} FPS outside the stall and {s.others_fps_during:.1f} during it (largest fall of "
        f"one stream {s.worst_drop_pct:.1f} %, negative = it rose; limit {s.limit_pct:g} %: {'ok' if s.ok else 'FAILED'}); "
        f"it came back with {s.stalled_frames_after} frames"
    )


def format_report(rep: StreamsBenchReport) -> list[str]:
    """Machine, settings, the table, the largest N each way held and the stall check."""
    c = rep.config
    out = [
        rep.machine,
        f"engine: {rep.engine}; mode {c.mode}; {c.width}x{c.height} @ {c.fps:g} fps '{c.source}' sources; "
        f"warm-up {c.warmup:g} s, then {c.seconds:g} s measured per run; holds = every stream >= "
        f"{c.hold_ratio:g} x {c.fps:g} FPS and 0 drops",
        *format_table(rep.rows),
    ]
    held = {w: rep.held(w) for w in WAYS if any(r.way == w for r in rep.rows)}
    for w, n in held.items():
        out.append(f"largest N held, {w}: {n}{' (or more: the largest N tried)' if rep.capped(w) else ''}")
    if len(held) == 2 and held["processes"]:
        out.append(f"batched / processes: {held['batched'] / held['processes']:.2g}x the streams")
    if rep.stall is not None:
        out.append(format_stall(rep.stall))
    return out
