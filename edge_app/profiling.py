"""Stage timers and latency statistics on ``time.perf_counter()``.

``StageTimer`` is a context manager keyed by stage name; the numbers it records feed the overlay, the
JSON lines and the reports, so all three always agree.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import numpy as np


class RollingStats:
    """The last ``window`` samples of one stage (constant memory), with percentiles."""

    def __init__(self, window: int = 120) -> None:
        self.samples: deque[float] = deque(maxlen=window)
        self.count = 0

    def add(self, ms: float) -> None:
        self.samples.append(ms)
        self.count += 1

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self.samples, float), q)) if self.samples else float("nan")

    @property
    def last(self) -> float:
        return self.samples[-1] if self.samples else float("nan")


class StageTimer:
    """Times named stages: ``with timer.stage("inference"): ...``; ``frame_timings`` holds the current frame's."""

    def __init__(self, window: int = 120) -> None:
        self.window = window
        self.stats: dict[str, RollingStats] = {}
        self.frame_timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, (time.perf_counter() - t0) * 1e3)

    def record(self, name: str, ms: float) -> None:
        """Add a measurement in milliseconds (for stages timed elsewhere, e.g. CUDA events)."""
        self.stats.setdefault(name, RollingStats(self.window)).add(ms)
        self.frame_timings[name] = ms

    def new_frame(self) -> dict[str, float]:
        """Return the finished frame's timings and start a new frame."""
        done, self.frame_timings = self.frame_timings, {}
        return done


def percentiles(samples_ms: list[float] | np.ndarray, qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": .., "p90": .., "p99": .., "mean": .., "min": .., "max": ..}`` of a list of milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {**{f"p{q:g}": float("nan") for q in qs}, "mean": float("nan"), "min": float("nan"), "max": float("nan")}
    return {**{f"p{q:g}": float(np.percentile(a, q)) for q in qs}, "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max())}
