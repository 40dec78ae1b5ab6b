"""A bounded soak of the multi-source loop: memory, threads and fds stay flat; file frames all accounted for."""

from __future__ import annotations

import math

import pytest

from edge_app.frames.labellers import make_labeller
from edge_app.frames.pipeline import Pipeline, PipelineConfig
from edge_app.profiling.soak import run_soak, slope_per_10min
from tests.frames.fakes import FakeEngine, FakeSource, RecordingSink


def test_slope_is_per_ten_minutes() -> None:
    assert slope_per_10min([0, 60, 120], [100, 101, 102]) == pytest.approx(10.0)
    assert slope_per_10min([0], [1]) == 0.0


@pytest.mark.slow
def test_a_short_soak_with_live_sources_and_a_file_that_ends_early() -> None:
    sinks = [RecordingSink() for _ in range(4)]
    live = [FakeSource(n=0, live=True, period_s=1 / 60) for _ in range(3)]
    short_file = FakeSource(n=40)  # ends long before the others
    for s in live:
        s.fps = 60.0
    p = Pipeline(
        make_labeller(FakeEngine()),
        [*live, short_file],
        [],
        PipelineConfig(batch=4, duration=6.0),
        source_sinks=[[s] for s in sinks],
    )
    rep = run_soak(p, every_s=0.5, warmup_s=2.0)
    assert rep.report is not None and len(rep.samples) >= 8
    assert sinks[3].indices == list(range(40))  # the file: every frame, in order, none dropped
    for i in range(3):  # live sources: every frame read is written or counted as dropped
        src = rep.report.sources[i]
        assert src.frames_written + src.frames_dropped == src.frames_read
        assert src.fps > 20  # ~60 fps sources keep running next to the finished file (a loaded CI box is slower)
    after = rep.after_warmup()
    # No growth over the run (other tests' daemon threads may still be ending in a shared process: a fall is fine).
    assert after[-1].threads <= after[0].threads + 1 and after[-1].fds <= after[0].fds + 2
    e2e = [s.e2e_ms[0] for s in after if not math.isnan(s.e2e_ms[0])]
    assert e2e and max(e2e) < 200  # no growing delay
    assert any("slopes per 10 min" in line for line in rep.lines())
