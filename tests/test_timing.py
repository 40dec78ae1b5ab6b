"""Stage timers, histograms and the FPS meter checked against numpy on known inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge_app.timing import FpsMeter, LogHistogram, RollingStats, StageTimer, percentiles


def _lognormal(rng: np.random.Generator, n: int) -> np.ndarray:
    # latency-like: a few ms with a long right tail
    return rng.lognormal(mean=np.log(5.0), sigma=0.4, size=n)


def test_percentiles_match_numpy(rng: np.random.Generator) -> None:
    x = _lognormal(rng, 1000)
    got = percentiles(x)
    for q in (50, 90, 99):
        assert got[f"p{q}"] == pytest.approx(np.percentile(x, q))
    assert got["mean"] == pytest.approx(x.mean())
    assert (got["min"], got["max"]) == (x.min(), x.max())


def test_percentiles_of_nothing_are_nan() -> None:
    assert all(np.isnan(v) for v in percentiles([]).values())


@pytest.mark.parametrize("n", [1, 7, 5000])
def test_histogram_percentiles_within_one_bin_of_numpy(rng: np.random.Generator, n: int) -> None:
    x = _lognormal(rng, n)
    h = LogHistogram()
    for v in x:
        h.add(float(v))
    tol = h.bin_ratio - 1  # the estimate lies in the exact value's bin: relative error below one bin width
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        exact = np.percentile(x, q)
        assert abs(h.percentile(q) - exact) / exact <= tol, q
    assert h.mean == pytest.approx(x.mean())
    assert (h.min, h.max, h.count) == (x.min(), x.max(), n)


def test_histogram_edges_and_out_of_range_values() -> None:
    h = LogHistogram(lo_ms=1.0, hi_ms=100.0, bins_per_decade=10)
    assert h.n_bins == 20
    e = h.edges()
    assert e[0] == pytest.approx(1.0) and e[-1] == pytest.approx(100.0)
    assert np.allclose(e[1:] / e[:-1], h.bin_ratio)
    for v in (0.5, 1.0, 99.9, 100.0, 500.0):
        h.add(v)
    assert h.counts[0] == 1 and h.counts[-1] == 2 and h.counts.sum() == 5
    assert h.percentile(0) == 0.5 and h.percentile(100) == 500.0
    d = h.to_dict()
    assert sum(d["bins"].values()) == 5 and d["bins_per_decade"] == 10


def test_histogram_rejects_bad_range_and_quantile() -> None:
    with pytest.raises(ValueError, match="0 < lo < hi"):
        LogHistogram(lo_ms=10, hi_ms=1)
    with pytest.raises(ValueError, match="within 0..100, got 101"):
        LogHistogram().percentile(101)


def test_rolling_stats_window_and_whole_run(rng: np.random.Generator) -> None:
    x = _lognormal(rng, 3000)
    s = RollingStats(window=500)
    for v in x[:400]:
        s.add(float(v))
    run = s.run_summary()
    assert run["exact"] and run["p99"] == pytest.approx(np.percentile(x[:400], 99))
    for v in x[400:]:
        s.add(float(v))
    # memory stays bounded: only the window is kept, the rest lives in fixed histogram bins
    assert len(s.samples) == 500 and s.hist.counts.size == LogHistogram().counts.size
    assert s.percentile(90) == pytest.approx(np.percentile(x[-500:], 90))
    assert s.last == x[-1] and s.count == 3000
    w = s.window_summary()
    assert w["n"] == 500 and w["max"] == x[-500:].max()
    run = s.run_summary()
    assert not run["exact"] and run["count"] == 3000
    assert run["mean"] == pytest.approx(x.mean()) and run["max"] == x.max() and run["min"] == x.min()
    for q in (50, 90, 99):
        assert abs(run[f"p{q}"] - np.percentile(x, q)) / np.percentile(x, q) <= s.hist.bin_ratio - 1


def test_stage_timer_records_per_stage_and_per_frame() -> None:
    t = StageTimer(window=10)
    for _ in range(3):
        with t.stage("sleep"):
            time.sleep(0.01)
        t.record("gpu", 2.5)
        frame = t.new_frame()
        assert set(frame) == {"sleep", "gpu"} and frame["gpu"] == 2.5
        assert frame["sleep"] >= 10.0
    assert t.frame_timings == {}
    summ = t.summary()
    assert list(summ) == ["sleep", "gpu"] and summ["gpu"]["count"] == 3 and summ["gpu"]["p50"] == 2.5
    assert 10.0 <= summ["sleep"]["min"] < 200.0


def test_stage_timer_calls_sync_around_the_stage() -> None:
    calls: list[float] = []
    t = StageTimer()
    with t.stage("gpu", sync=lambda: calls.append(time.perf_counter())):
        time.sleep(0.005)
    assert len(calls) == 2 and (calls[1] - calls[0]) * 1e3 >= 5.0


def test_stage_timer_records_when_body_raises() -> None:
    t = StageTimer()
    with pytest.raises(RuntimeError, match="boom"):
        with t.stage("broken"):
            raise RuntimeError("boom")
    assert t.stats["broken"].count == 1


def test_fps_meter_counts_intervals_not_frames() -> None:
    m = FpsMeter(window=5)
    assert np.isnan(m.fps)
    m.tick(0.0)
    assert np.isnan(m.fps)  # one frame is no interval
    for i in range(1, 10):
        m.tick(i * 0.1)  # 10 frames, 9 intervals of 0.1 s: exactly 10 fps (N/(N-1) would say 11.1)
    assert m.fps == pytest.approx(10.0)
    assert m.overall_fps == pytest.approx(10.0)
    m.tick(1.5)  # a stall: the 5-frame window (0.6 .. 1.5 s) sees 4 intervals over 0.9 s
    assert m.fps == pytest.approx(4 / 0.9)
    assert m.overall_fps == pytest.approx(10 / 1.5)


def test_fps_meter_rejects_window_without_interval() -> None:
    with pytest.raises(ValueError, match="at least 2 frames"):
        FpsMeter(window=1)


def test_merging_pools_runs_exactly_while_windows_hold_everything(rng: np.random.Generator) -> None:
    x = _lognormal(rng, 300)
    a, b, pooled = RollingStats(window=200), RollingStats(window=200), RollingStats(window=1000)
    for v in x[:150]:
        a.add(float(v))
    for v in x[150:]:
        b.add(float(v))
    pooled.merge(a)
    pooled.merge(b)
    run = pooled.run_summary()
    assert run["exact"] and run["count"] == 300 and run["p90"] == pytest.approx(np.percentile(x, 90))
    small = RollingStats(window=100)
    small.merge(a)  # 150 samples into a window of 100: the histogram carries the run
    assert not small.run_summary()["exact"] and small.hist.count == 150
    with pytest.raises(ValueError, match="different bins"):
        LogHistogram().merge(LogHistogram(bins_per_decade=10))
