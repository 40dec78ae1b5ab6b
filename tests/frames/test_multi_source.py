"""Many sources, one engine call: batches across sources, per-source results and sinks, no source holds another."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from edge_app.frames.batcher import FrameSlots
from edge_app.frames.labellers import make_labeller
from edge_app.frames.pipeline import PipelineConfig, run_pipeline
from edge_app.video.sinks import JsonlSink
from tests.frames.fakes import FakeEngine, FakeSource, RecordingSink


def test_files_are_batched_across_sources_and_every_frame_reaches_its_own_sink(tmp_path: Path) -> None:
    eng = FakeEngine()
    shared, own = RecordingSink(), [RecordingSink(), RecordingSink(), RecordingSink()]
    js = JsonlSink(tmp_path / "all.jsonl")
    sources = [FakeSource(n=9), FakeSource(n=6), FakeSource(n=3)]
    rep = run_pipeline(
        make_labeller(eng), sources, [shared, js], PipelineConfig(batch=6), source_sinks=[[s] for s in own]
    )
    assert rep.frames_written == 18 and rep.frames_dropped == 0 and rep.stopped_by == "end"
    assert [s.indices for s in own] == [list(range(9)), list(range(6)), list(range(3))]  # files never drop
    assert sorted((r.source_id, r.index) for r in shared.results) == sorted(
        (sid, i) for sid, n in enumerate((9, 6, 3)) for i in range(n)
    )
    assert eng.calls[0] == 6 and sum(eng.calls) == 18  # one engine call holds frames of several sources
    lines = [json.loads(s) for s in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert {ln["source_id"] for ln in lines} == {0, 1, 2} and len(lines) == 18
    assert [s.frames_written for s in rep.sources] == [9, 6, 3]
    assert "source 2 fake" in rep.summary()


def test_a_single_source_writes_no_source_id() -> None:
    sink = RecordingSink()
    run_pipeline(make_labeller(FakeEngine()), FakeSource(n=3), [sink], PipelineConfig())
    assert [r.source_id for r in sink.results] == [None] * 3


def test_a_stalled_live_source_does_not_hold_back_the_others() -> None:
    """Two live sources at 100 fps; a third never delivers. The two keep their rate; batches go on time."""
    sinks = [RecordingSink(), RecordingSink(), RecordingSink()]
    fast = [FakeSource(n=0, live=True, period_s=0.01), FakeSource(n=0, live=True, period_s=0.01)]
    stalled = FakeSource(n=0, live=True, period_s=30.0)
    for s in (*fast, stalled):
        s.fps = 100.0
    rep = run_pipeline(
        make_labeller(FakeEngine()),
        [*fast, stalled],
        [],
        PipelineConfig(batch=3, duration=1.0),
        source_sinks=[[s] for s in sinks],
    )
    got = [len(s.indices) for s in sinks]
    assert got[2] == 0 and min(got[:2]) >= 30, got  # ~100 frames each in 1 s; held back by the stalled one: 0
    assert rep.sources[0].end_to_end_ms["p50"] < 100


def test_live_slots_keep_the_newest_frames_and_count_drops_per_source() -> None:
    slots = FrameSlots([2, 2], [True, False], lambda: False)
    for i in range(5):
        slots.put(0, i)
    slots.put(1, "a")
    assert slots.dropped == [3, 0]
    batch = slots.take(4, 0.01)
    assert sorted(batch, key=str) == sorted([(0, 3), (0, 4), (1, "a")], key=str)


def test_a_file_slot_blocks_its_capture_thread_instead_of_dropping() -> None:
    slots = FrameSlots([1], [False], lambda: False)
    slots.put(0, 1)
    t = threading.Thread(target=slots.put, args=(0, 2))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()  # waiting for room: a file never drops a frame
    assert slots.take(1, 0.01) == [(0, 1)]
    t.join(timeout=2)
    assert not t.is_alive() and slots.take(1, 0.01) == [(0, 2)] and slots.dropped == [0]


def test_the_batcher_ends_when_every_source_has_ended() -> None:
    slots = FrameSlots([2, 2], [False, False], lambda: False)
    slots.put(0, "x")
    slots.end(0)
    slots.end(1)
    assert slots.take(8, 0.01) == [(0, "x")] and slots.take(8, 0.01) == []


def test_source_sinks_must_match_the_sources() -> None:
    with pytest.raises(ValueError, match="source_sinks has 1 entries for 2 sources"):
        run_pipeline(make_labeller(FakeEngine()), [FakeSource(), FakeSource()], [], source_sinks=[[]])


def test_no_drawing_without_an_image_sink(tmp_path: Path) -> None:
    js = JsonlSink(tmp_path / "a.jsonl")
    rep = run_pipeline(make_labeller(FakeEngine()), FakeSource(n=4), [js], PipelineConfig())
    lines = [json.loads(s) for s in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert rep.frames_written == 4 and all(ln["timings_ms"]["overlay"] < 0.5 for ln in lines)
