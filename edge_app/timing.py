"""Stage timers and latency statistics on ``time.perf_counter()``.

``StageTimer`` is a context manager keyed by stage name; the numbers it records feed the overlay, the
JSON lines, the reports and ``bench``, so all of them always agree.

Memory per stage is constant however long the run: a rolling window of the last N samples (what the live
HUD shows) plus a whole-run histogram on fixed log-spaced bins (what the reports show). Whole-run
percentiles are exact while every sample still fits in the window and come from the histogram after that,
within one bin width (about 2.3 % at the default 100 bins per decade).
"""

from __future__ import annotations

import math
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

QUANTILES = (50, 90, 99)


class LogHistogram:
    """Counts of milliseconds on fixed log-spaced bins from ``lo_ms`` to ``hi_ms``; constant memory.

    Values below ``lo_ms`` land in an underflow bin, values at or above ``hi_ms`` in an overflow bin; min,
    max, sum and count are kept exactly, so the mean and the extremes are exact whatever the bins.
    """

    def __init__(self, lo_ms: float = 1e-3, hi_ms: float = 1e6, bins_per_decade: int = 100) -> None:
        if not (0 < lo_ms < hi_ms) or bins_per_decade < 1:
            raise ValueError(
                f"histogram range must satisfy 0 < lo < hi with >= 1 bin per decade, got lo={lo_ms}, hi={hi_ms}, "
                f"bins_per_decade={bins_per_decade}"
            )
        self.lo_ms, self.hi_ms, self.bins_per_decade = float(lo_ms), float(hi_ms), int(bins_per_decade)
        self.n_bins = math.ceil(math.log10(hi_ms / lo_ms) * bins_per_decade)
        # index 0: underflow, 1..n_bins: the log bins, n_bins + 1: overflow
        self.counts = np.zeros(self.n_bins + 2, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def bin_ratio(self) -> float:
        """Upper over lower edge of one bin: the worst-case relative error of a histogram percentile."""
        return 10.0 ** (1.0 / self.bins_per_decade)

    def edges(self) -> np.ndarray:
        """The ``n_bins + 1`` edges of the log bins (the under/overflow bins lie outside them)."""
        return self.lo_ms * 10.0 ** (np.arange(self.n_bins + 1) / self.bins_per_decade)

    def _index(self, ms: float) -> int:
        if ms < self.lo_ms:
            return 0
        if ms >= self.hi_ms:
            return self.n_bins + 1
        return 1 + min(self.n_bins - 1, int(math.log10(ms / self.lo_ms) * self.bins_per_decade))

    def add(self, ms: float) -> None:
        """Count one sample (milliseconds)."""
        self.counts[self._index(ms)] += 1
        self.count += 1
        self.total += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s counts (same bin layout), e.g. to pool several runs of one variant."""
        if (other.lo_ms, other.hi_ms, other.bins_per_decade) != (self.lo_ms, self.hi_ms, self.bins_per_decade):
            raise ValueError(
                "histograms with different bins cannot be merged; create both with the same lo_ms, hi_ms, bins_per_decade"
            )
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _bin_bounds(self, i: int) -> tuple[float, float]:
        if i == 0:
            return self.min, self.lo_ms
        if i == self.n_bins + 1:
            return self.hi_ms, self.max
        lo = self.lo_ms * 10.0 ** ((i - 1) / self.bins_per_decade)
        return lo, lo * self.bin_ratio

    def _order_statistic(self, k: int, cum: np.ndarray) -> float:
        """Estimate of the k-th smallest sample (0-based): exact at the ends, else placed inside its bin by rank."""
        if k <= 0:
            return self.min
        if k >= self.count - 1:
            return self.max
        i = int(np.searchsorted(cum, k + 1))
        lo, hi = self._bin_bounds(i)
        lo, hi = max(lo, self.min), min(hi, self.max)
        # spread the bin's n samples evenly in log space: the j-th of n sits at fraction (j + 0.5) / n
        frac = (k - (int(cum[i - 1]) if i > 0 else 0) + 0.5) / int(self.counts[i])
        value = lo * (hi / lo) ** frac if lo > 0 else lo + (hi - lo) * frac
        return float(min(max(value, self.min), self.max))

    def percentile(self, q: float) -> float:
        """Approximate ``q``-th percentile (0..100), interpolated between order statistics as numpy does.

        Each order statistic is estimated inside its own bin, so the result is within one bin width (relative
        error below ``bin_ratio - 1``) of ``numpy.percentile`` of the same samples.
        """
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within 0..100, got {q}")
        if self.count == 0:
            return float("nan")
        rank = q / 100.0 * (self.count - 1)  # numpy's default ("linear") rank, 0-based
        cum = np.cumsum(self.counts)
        k = math.floor(rank)
        a = self._order_statistic(k, cum)
        if rank == k:
            return a
        return a + (self._order_statistic(k + 1, cum) - a) * (rank - k)

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON form: the bin layout and the non-empty bins only."""
        nz = np.nonzero(self.counts)[0]
        return {
            "lo_ms": self.lo_ms,
            "hi_ms": self.hi_ms,
            "bins_per_decade": self.bins_per_decade,
            "n_bins": self.n_bins,
            "bins": {int(i): int(self.counts[i]) for i in nz},
            "count": self.count,
            "min_ms": self.min if self.count else None,
            "max_ms": self.max if self.count else None,
        }


class RollingStats:
    """One stage: the last ``window`` samples (for the HUD) and a whole-run histogram (for reports)."""

    def __init__(self, window: int = 120) -> None:
        if window < 1:
            raise ValueError(f"window must hold at least 1 sample, got {window}")
        self.samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.hist = LogHistogram()

    def add(self, ms: float) -> None:
        """Record one sample in milliseconds."""
        self.samples.append(ms)
        self.count += 1
        self.hist.add(ms)

    def merge(self, other: RollingStats) -> None:
        """Pool ``other`` into this one: its window's samples join ours, its histogram adds to ours.

        Whole-run figures stay exact only if neither side has dropped a sample from its window.
        """
        self.samples.extend(other.samples)
        self.count += other.count
        self.hist.merge(other.hist)

    def percentile(self, q: float) -> float:
        """Percentile ``q`` (0..100) of the rolling window."""
        return float(np.percentile(np.fromiter(self.samples, float), q)) if self.samples else float("nan")

    @property
    def last(self) -> float:
        return self.samples[-1] if self.samples else float("nan")

    @property
    def exact(self) -> bool:
        """True while the window still holds every sample of the run, so whole-run figures are exact."""
        return self.count == len(self.samples)

    def window_summary(self) -> dict[str, float]:
        """p50/p90/p99/max/mean and n of the rolling window."""
        return {**percentiles(np.fromiter(self.samples, float)), "n": len(self.samples)}

    def run_summary(self) -> dict[str, Any]:
        """Whole-run min/p50/p90/p99/max/mean (ms), count, total; exact while the window holds everything."""
        if self.exact:
            out: dict[str, Any] = percentiles(np.fromiter(self.samples, float))
        else:
            h = self.hist
            out = {**{f"p{q:g}": h.percentile(q) for q in QUANTILES}, "mean": h.mean, "min": h.min, "max": h.max}
        out.update(count=self.count, total_ms=self.hist.total, exact=self.exact)
        return out


class StageTimer:
    """Times named stages: ``with timer.stage("inference"): ...``; ``frame_timings`` holds the current frame's."""

    def __init__(self, window: int = 120) -> None:
        self.window = window
        self.stats: dict[str, RollingStats] = {}
        self.frame_timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, sync: Callable[[], None] | None = None) -> Iterator[None]:
        """Time the ``with`` body as stage ``name``.

        ``sync`` (e.g. ``torch.cuda.synchronize``) is called before both clock readings, so asynchronous GPU
        work queued before the stage is not billed to it and work queued inside it is.
        """
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync is not None:
                sync()
            self.record(name, (time.perf_counter() - t0) * 1e3)

    def record(self, name: str, ms: float) -> None:
        """Add a measurement in milliseconds (for stages timed elsewhere, e.g. CUDA events)."""
        self.stats.setdefault(name, RollingStats(self.window)).add(ms)
        self.frame_timings[name] = ms

    def new_frame(self) -> dict[str, float]:
        """Return the finished frame's timings and start a new frame."""
        done, self.frame_timings = self.frame_timings, {}
        return done

    def summary(self) -> dict[str, dict[str, Any]]:
        """Whole-run statistics of every stage, in the order the stages were first seen."""
        return {name: s.run_summary() for name, s in self.stats.items()}


class FpsMeter:
    """Frames per second from frame timestamps: N frames span N-1 intervals.

    ``fps`` covers the last ``window`` frames (for a live HUD); ``overall_fps`` the whole run.
    """

    def __init__(self, window: int = 30) -> None:
        if window < 2:
            raise ValueError(f"an FPS window needs at least 2 frames (one interval), got {window}")
        self.times: deque[float] = deque(maxlen=window)
        self.count = 0
        self.first: float | None = None

    def tick(self, t: float | None = None) -> float:
        """Register a frame at time ``t`` (seconds, default ``perf_counter()``); return the windowed FPS."""
        t = time.perf_counter() if t is None else t
        if self.first is None:
            self.first = t
        self.times.append(t)
        self.count += 1
        return self.fps

    @staticmethod
    def _rate(frames: int, span: float) -> float:
        return (frames - 1) / span if frames >= 2 and span > 0 else float("nan")

    @property
    def fps(self) -> float:
        """FPS over the window (nan until two frames have been seen)."""
        return self._rate(len(self.times), self.times[-1] - self.times[0]) if self.times else float("nan")

    @property
    def overall_fps(self) -> float:
        """FPS over the whole run (nan until two frames have been seen)."""
        if self.first is None:
            return float("nan")
        return self._rate(self.count, self.times[-1] - self.first)


def percentiles(samples_ms: list[float] | np.ndarray, qs: tuple[float, ...] = QUANTILES) -> dict[str, float]:
    """``{"p50": .., "p90": .., "p99": .., "mean": .., "min": .., "max": ..}`` of a list of milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {**{f"p{q:g}": float("nan") for q in qs}, "mean": float("nan"), "min": float("nan"), "max": float("nan")}
    return {
        **{f"p{q:g}": float(np.percentile(a, q)) for q in qs},
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }
