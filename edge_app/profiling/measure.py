"""The measuring loop of ``bench``: a warm-up per case, then interleaved time slices until each case is done.

Variants run **interleaved**: round-robin in short time slices, so a noisy neighbour (5 people share our
2-core machines) slows every variant alike and the ratios stay fair. Each call is timed on
``perf_counter()``; backends that run on a GPU synchronise before returning, so the clock covers the work.
Warm-up calls are never recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edge_app.profiling.config import BenchConfig
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Variant
from edge_app.timing import StageTimer


@dataclass
class Case:
    """One variant at one batch size while it is being measured (mutable: the loop below fills it in)."""

    variant: Variant
    engine: Engine
    batch: int
    timer: StageTimer  # "latency" per call, plus the engine's own stages (e.g. h2d/compute/d2h)
    warmup_s: float = 0.0
    warmup_calls: int = 0
    measured_s: float = 0.0
    calls: int = 0
    slices: int = 0

    def done(self, cfg: BenchConfig, extra_s: float = 0.0) -> bool:
        """Whether the case has run both ``cfg.duration`` seconds (plus ``extra_s`` now) and ``cfg.iterations`` calls."""
        return self.measured_s + extra_s >= cfg.duration and self.calls >= cfg.iterations


def _warm_up(case: Case, images: np.ndarray, seconds: float) -> None:
    """Run until ``seconds`` have passed (at least one call): lazy allocations and thread pools settle."""
    t0 = time.perf_counter()
    while True:
        case.engine.infer(images)
        case.warmup_calls += 1
        if time.perf_counter() - t0 >= seconds:
            break
    case.warmup_s = time.perf_counter() - t0


def _run_slice(case: Case, images: np.ndarray, cfg: BenchConfig) -> None:
    """One turn of the round-robin: calls until the slice is used up or the case is done."""
    eng, timer = case.engine, case.timer
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        eng.infer(images)
        t1 = time.perf_counter()
        timer.record("latency", (t1 - t0) * 1e3)
        for stage, ms in eng.last_timings.items():
            timer.record(stage, ms)
        case.calls += 1
        if t1 - t_start >= cfg.slice_s or case.done(cfg, t1 - t_start):
            break
    case.measured_s += time.perf_counter() - t_start
    case.slices += 1


def measure(
    cases: list[Case], images: np.ndarray, cfg: BenchConfig, tick: Callable[[float], None] = lambda s: None
) -> None:
    """Warm each case up, then round-robin slices over the cases until every one is done."""
    for c in cases:
        _warm_up(c, images, cfg.warmup)
        tick(c.warmup_s)
    active = list(cases)
    while active:
        for c in list(active):
            before = c.measured_s
            _run_slice(c, images, cfg)
            tick(c.measured_s - before)
            if c.done(cfg):
                active.remove(c)


def progress_bar(enabled: bool, total_s: float, desc: str) -> Any:
    """A tqdm bar counting seconds of the run (None when ``enabled`` is False); the caller closes it."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=round(total_s, 1), desc=desc, unit="s", leave=False, bar_format="{l_bar}{bar}| {elapsed}<{remaining}"
    )


def progress_ticker(bar: Any) -> Callable[[float], None]:
    """Advance ``bar`` by measured seconds, never past its end (warm-up and last slices overshoot a little)."""

    def tick(seconds: float) -> None:
        if bar is not None:
            bar.update(max(0.0, min(seconds, bar.total - bar.n)))

    return tick
