"""The threaded frame loop: drop policy, batching, stop conditions, clean shutdown, and the `live` command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_app.cli import main as cli_main
from edge_app.frames.labellers import TileConfig, make_labeller
from edge_app.frames.pipeline import PipelineConfig, run_pipeline
from edge_app.video.sinks import JsonlSink, VideoFileSink
from tests.frames.fakes import FakeEngine, FakeSource, RecordingSink
from tests.helpers import count_frames

REPO = Path(__file__).resolve().parents[2]


def test_file_source_never_drops_and_keeps_order(tmp_path: Path) -> None:
    src = FakeSource(n=40, live=False)
    sink = RecordingSink()
    js = JsonlSink(tmp_path / "out.jsonl")
    rep = run_pipeline(make_labeller(FakeEngine(delay_s=0.004)), src, [sink, js], PipelineConfig(batch=3))
    assert rep.frames_read == rep.frames_written == 40 and rep.frames_dropped == 0
    assert sink.indices == list(range(40))
    assert rep.stopped_by == "end" and sink.closed and src.closed.is_set()
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [ln["frame"] for ln in lines] == list(range(40))
    # JSON lines are written after the image sinks, so they carry the frame's end-to-end latency.
    assert {"capture", "preprocess", "inference", "postprocess", "overlay", "end_to_end"} <= set(
        lines[-1]["timings_ms"]
    )


def test_live_source_drops_oldest_and_counts() -> None:
    src = FakeSource(n=60, live=True)  # frames arrive far faster than the 15 ms engine
    sink = RecordingSink()
    rep = run_pipeline(make_labeller(FakeEngine(delay_s=0.015)), src, [sink], PipelineConfig(batch=1))
    assert rep.frames_dropped > 0
    assert rep.frames_read == 60 == rep.frames_written + rep.frames_dropped
    assert sink.indices == sorted(sink.indices)
    # Dropping the OLDEST frame keeps the newest: the last captured frame is always shown.
    assert sink.indices[-1] == 59


def test_classify_batches_frames_per_engine_call() -> None:
    eng = FakeEngine()
    run_pipeline(make_labeller(eng), FakeSource(n=10), [RecordingSink()], PipelineConfig(batch=4))
    assert eng.calls == [4, 4, 2]


def test_tiles_mode_runs_all_tiles_of_a_frame_in_one_call() -> None:
    eng = FakeEngine()
    sink = RecordingSink()
    lab = make_labeller(eng, "tiles", TileConfig(grid=(3, 2), scales=(1.0, 0.6)))
    run_pipeline(lab, FakeSource(n=3, size=(160, 90)), [sink], PipelineConfig(batch=1))
    from edge_app.frames.preprocess import tile_boxes

    n_tiles = len(tile_boxes((160, 90), (3, 2), (1.0, 0.6), TileConfig().min_overlap))
    assert eng.calls == [n_tiles] * 3


@pytest.mark.parametrize(
    "cfg,reason,written",
    [
        (PipelineConfig(max_frames=7), "max_frames", 7),
        (PipelineConfig(duration=0.3), "duration", None),
    ],
)
def test_stop_conditions(cfg: PipelineConfig, reason: str, written: int | None) -> None:
    src = FakeSource(n=0, live=True, period_s=0.01)  # endless
    sink = RecordingSink()
    rep = run_pipeline(make_labeller(FakeEngine()), src, [sink], cfg)
    assert rep.stopped_by == reason and sink.closed and src.closed.is_set()
    if written is not None:
        assert rep.frames_read == written
    assert rep.frames_written == len(sink.indices) > 0


def test_quit_key_in_a_window_stops_the_loop() -> None:
    sink = RecordingSink(quit_after=5)
    rep = run_pipeline(
        make_labeller(FakeEngine()), FakeSource(n=0, live=True, period_s=0.005), [sink], PipelineConfig()
    )
    assert rep.stopped_by == "key" and sink.closed


def test_ctrl_c_stops_cleanly_and_flushes_sinks(tmp_path: Path) -> None:
    src = FakeSource(n=0, live=True, size=(96, 64), period_s=0.01)
    video, jsonl = VideoFileSink(tmp_path / "v.mp4", 30.0, (96, 64)), JsonlSink(tmp_path / "v.jsonl")
    rep = run_pipeline(
        make_labeller(FakeEngine(interrupt_after=10)), src, [video, jsonl], PipelineConfig()
    )  # Ctrl-C on call 10
    assert rep.stopped_by == "interrupt" and rep.frames_written > 0
    lines = (tmp_path / "v.jsonl").read_text().splitlines()
    assert len(lines) == rep.frames_written  # every written frame's line was flushed on close
    assert count_frames(tmp_path / "v.mp4") == rep.frames_written  # the video was finalised, so it is readable


def test_worker_error_is_raised_after_sinks_are_closed() -> None:
    sink = RecordingSink()
    src = FakeSource(n=0, live=True, period_s=0.005)
    with pytest.raises(RuntimeError, match="fake engine failure"):
        run_pipeline(make_labeller(FakeEngine(fail=True)), src, [sink], PipelineConfig())
    assert sink.closed and src.closed.is_set()


def test_hud_stats_reach_sinks_that_want_them() -> None:
    sink = RecordingSink()
    run_pipeline(
        make_labeller(FakeEngine()),
        FakeSource(n=30, live=False, period_s=0.002),
        [sink],
        PipelineConfig(stats_every_s=0.0),
    )
    last = sink.stats[-1]
    assert last["backend"] == "fake" and last["frames_written"] >= 29 and last["fps"] > 0
    assert "inference" in last["stages_ms"]


def test_report_stages_and_latency() -> None:
    rep = run_pipeline(make_labeller(FakeEngine(delay_s=0.002)), FakeSource(n=12), [RecordingSink()], PipelineConfig())
    d = rep.to_dict()
    assert d["stages_ms"]["inference"]["p50"] >= 2.0
    assert d["end_to_end_ms"]["p50"] >= d["stages_ms"]["inference"]["p50"]
    assert d["throughput_fps"] > 0 and d["frames_written"] == 12


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    "args,match",
    [
        (["--mode", "tiles", "--tiles", "0x3"], r"--tiles 0x3 needs 1 to 32 columns and rows"),
        (["--mode", "tiles", "--conf", "2"], r"--conf 2 is not a probability"),
        (["--scales", "1.0,0"], r"--scales 1,0 is out of range"),
        (["--tiles", "3by3"], r"tile grid '3by3' is not COLSxROWS"),
        (["--batch", "0"], r"--batch 0 must be at least 1"),
    ],
)
def test_live_bad_options_are_one_sentence(args: list[str], match: str, tiny_engine: Path, capsys) -> None:
    code = cli_main(["live", "--engine", str(tiny_engine), "--source", "synthetic", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1
    import re

    assert re.search(match, err), err


def test_live_unwritable_output_is_a_user_error(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = cli_main(["live", "--engine", str(tiny_engine), "--source", "synthetic", "--save", str(blocker / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and "Traceback" not in err


def test_live_synthetic_to_video_and_jsonl(tiny_engine: Path, tmp_path: Path) -> None:
    out, jl = tmp_path / "live.mp4", tmp_path / "live.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "live",
            "--engine",
            str(tiny_engine),
            "--source",
            "synthetic",
            "--width",
            "320",
            "--height",
            "180",
            "--mode",
            "tiles",
            "--max-frames",
            "12",
            "--save",
            str(out),
            "--jsonl",
            str(jl),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "12 frames read" in r.stdout and "end-to-end latency p50" in r.stdout
    lines = [json.loads(s) for s in jl.read_text().splitlines()]
    assert 1 <= len(lines) <= 12
    assert all("end_to_end" in ln["timings_ms"] for ln in lines)
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(lines)


class _Numbering:
    """A post-label step that numbers labels per source and reports how many frames it saw."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def update(self, source_id: int, frame_index: int, labels: list) -> list:
        self.seen[source_id] = self.seen.get(source_id, 0) + 1
        return [dataclasses.replace(lab, track_id=i) for i, lab in enumerate(labels)]

    def reset(self, source_id: int) -> None:
        self.seen.pop(source_id, None)

    def frame_extra(self, source_id: int) -> dict:
        return {"counts": {"frames": self.seen[source_id]}}


def test_post_label_steps_run_in_order_and_their_output_reaches_the_json_lines(tmp_path: Path) -> None:
    step = _Numbering()
    js = JsonlSink(tmp_path / "out.jsonl")
    sink = RecordingSink()
    rep = run_pipeline(make_labeller(FakeEngine()), FakeSource(n=5), [sink, js], PipelineConfig(batch=2), [step])
    assert rep.frames_written == 5 and step.seen == {0: 5} and "post_label" in rep.stages
    assert all([lab.track_id for lab in r.labels] == list(range(len(r.labels))) for r in sink.results)
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [ln["counts"]["frames"] for ln in lines] == [1, 2, 3, 4, 5]
    assert "track_id" in lines[0]["labels"][0] and "source_id" not in lines[0]
