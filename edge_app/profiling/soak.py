"""Soak: run the frame loop for a long time and sample what would show a leak or a growing delay.

Every ``every_s`` seconds a sample records the process's resident memory, thread and file-descriptor counts,
and each source's FPS, end-to-end latency (rolling median) and drops. :func:`slope_per_10min` fits a line to
a series after the warm-up: a flat loop has slopes near zero; a leak or a growing queue shows as a slope.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from edge_app.frames.pipeline import Pipeline, PipelineConfig
from edge_app.frames.report import PipelineReport


@dataclass(frozen=True)
class SoakSample:
    """One sample of the running loop."""

    t: float  # seconds since the start
    rss_mb: float
    threads: int
    fds: int
    fps: tuple[float, ...]  # per source, over the HUD's window
    e2e_ms: tuple[float, ...]  # per source, rolling median
    dropped: tuple[int, ...]  # per source, so far
    written: int


@dataclass
class SoakReport:
    """Samples, the loop's own report, and the slopes after warm-up."""

    samples: list[SoakSample] = field(default_factory=list)
    report: PipelineReport | None = None
    warmup_s: float = 0.0

    def after_warmup(self) -> list[SoakSample]:
        """The samples taken after the warm-up."""
        return [s for s in self.samples if s.t >= self.warmup_s]

    def slopes(self) -> dict[str, float]:
        """Per 10 minutes: memory (% of its first post-warm-up value), threads, fds, each source's e2e (ms)."""
        s = self.after_warmup()
        if len(s) < 3:
            return {}
        t = [x.t for x in s]
        out = {
            "rss_pct": 100.0 * slope_per_10min(t, [x.rss_mb for x in s]) / max(s[0].rss_mb, 1e-9),
            "threads": slope_per_10min(t, [x.threads for x in s]),
            "fds": slope_per_10min(t, [x.fds for x in s]),
        }
        for i in range(len(s[0].e2e_ms)):
            ys = [x.e2e_ms[i] for x in s]
            if all(y == y for y in ys):
                out[f"e2e_ms_source{i}"] = slope_per_10min(t, ys)
        return out

    def lines(self) -> list[str]:
        """A table of the samples and the slopes, for the terminal and README."""
        out = ["   t s   RSS MB  thr  fds  " + "  ".join(f"src{i} fps/e2e ms/drop" for i in range(self._n()))]
        for x in self.samples:
            per = "  ".join(f"{f:5.1f}/{e:6.1f}/{d:4d}" for f, e, d in zip(x.fps, x.e2e_ms, x.dropped))
            out.append(f"{x.t:6.0f}  {x.rss_mb:7.1f}  {x.threads:3d}  {x.fds:3d}  {per}")
        sl = self.slopes()
        if sl:
            out.append("slopes per 10 min after warm-up: " + ", ".join(f"{k} {v:+.3g}" for k, v in sl.items()))
        if self.report is not None:
            out += self.report.summary().splitlines()
        return out

    def _n(self) -> int:
        return len(self.samples[0].fps) if self.samples else 0


def slope_per_10min(t: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``y`` over ``t`` (seconds), scaled to 10 minutes."""
    if len(t) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(t, float), np.asarray(y, float), 1)[0]) * 600.0


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def run_soak(
    pipeline: Pipeline,
    every_s: float = 10.0,
    warmup_s: float = 30.0,
    on_sample: Callable[[SoakSample], Any] | None = None,
) -> SoakReport:
    """Run ``pipeline`` to its end (give its config a ``duration``) sampling every ``every_s`` seconds."""
    rep = SoakReport(warmup_s=warmup_s)
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(every_s):
            n = len(pipeline.sources)
            huds = [pipeline.hud_info(i) for i in range(n)]
            s = SoakSample(
                t=time.monotonic() - t0,
                rss_mb=_rss_mb(),
                threads=threading.active_count(),
                fds=_fds(),
                fps=tuple(h.fps for h in huds),
                e2e_ms=tuple(h.end_to_end_ms for h in huds),
                dropped=tuple(h.dropped for h in huds),
                written=pipeline.report.frames_written,
            )
            rep.samples.append(s)
            if on_sample is not None:
                on_sample(s)

    sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
    sampler.start()
    try:
        rep.report = pipeline.run()
    finally:
        done.set()
        sampler.join(timeout=every_s + 1)
    return rep


__all__ = ["PipelineConfig", "SoakReport", "SoakSample", "run_soak", "slope_per_10min"]
