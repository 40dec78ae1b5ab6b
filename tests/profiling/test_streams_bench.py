"""The streams bench: N live sources in one batched loop vs N processes, the search for the largest N held,
and the stalled-source check; fakes only (an engine with a known speed, a tiny script standing in for `live`)."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from pathlib import Path

import pytest

from edge_app.errors import FieldError
from edge_app.frames.labellers import make_labeller
from edge_app.profiling.streams import measure_batched, measure_processes, measure_stall, read_records, search
from edge_app.profiling.streams_results import (
    StreamsBenchReport,
    StreamsConfig,
    StreamsRow,
    format_report,
    make_row,
    stream_uri,
    window_stats,
)
from tests.frames.fakes import FakeEngine, FakeSource

FAST = dict(engine="unused", seconds=1.0, warmup=0.3, grace_s=0.3, start_timeout_s=20.0)


def _live(n: int) -> list[FakeSource]:
    return [FakeSource(n=0, live=True, period_s=1 / 30) for _ in range(n)]


def test_window_counts_frames_by_capture_time_and_drops_by_index_gaps() -> None:
    a = [(i, 10.0 + i / 10, 5.0) for i in range(30)]  # 10 FPS, nothing lost
    b = [r for r in a if r[0] not in (12, 13, 17)]  # three frames dropped inside the window
    fps, drops, e2e = window_stats([a, b], 11.0, 12.0)  # indices 10..19
    assert fps == pytest.approx([10.0, 7.0])
    assert drops == [0, 3]
    assert len(e2e) == 17
    row = make_row("processes", [a, b], 11.0, 12.0, cpu_s=0.5, cfg=StreamsConfig("e", fps=10.0), batch=1)
    assert (row.fps_min, row.drops_total, row.drops_max, row.cpu_pct) == (7.0, 3, 3, pytest.approx(50.0))
    assert row.cpu_of == "2 processes" and not row.holds
    assert make_row("batched", [a, a], 11.0, 12.0, 0.1, StreamsConfig("e", fps=10.0), 2).holds
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.streams = 3  # type: ignore[misc]


def test_config_names_the_bad_field() -> None:
    with pytest.raises(FieldError, match="steps 1,3,2 must rise"):
        StreamsConfig("e", steps=(1, 3, 2))
    with pytest.raises(FieldError, match="hold_ratio 1.5 must be in"):
        StreamsConfig("e", hold_ratio=1.5)
    with pytest.raises(FieldError, match="width 0 must be a whole number of pixels"):
        StreamsConfig("e", width=0)


def test_every_synthetic_stream_gets_its_own_seed() -> None:
    assert stream_uri("synthetic", 0) == "synthetic?seed=1"
    assert stream_uri("synthetic?objects=2", 2) == "synthetic?objects=2&seed=3"
    assert stream_uri("synthetic?seed=7", 2) == "synthetic?seed=7"
    assert stream_uri("clip.mp4", 1) == "clip.mp4"


def test_batched_loop_holds_the_rate_of_three_live_sources(tmp_path: Path) -> None:
    cfg = StreamsConfig(**FAST)
    row, recs = measure_batched(make_labeller(FakeEngine()), _live(3), cfg, tmp_path)
    assert (row.way, row.streams, row.batch, row.cpu_of) == ("batched", 3, 3, "1 process")
    assert row.seconds == pytest.approx(1.0, abs=0.2)
    assert all(f > 20 for f in row.fps) and row.drops_total == 0  # ~30 FPS sources
    assert 0 < row.e2e_p50_ms <= row.e2e_p99_ms < 500
    assert row.cpu_pct > 0
    lines = (tmp_path / "batched-3.jsonl").read_text().splitlines()  # the same output cost as a live process
    assert {json.loads(line)["source_id"] for line in lines} == {0, 1, 2}
    assert all(len(r) > 20 for r in recs)


def test_a_slow_engine_does_not_hold_the_rate_and_drops_frames() -> None:
    cfg = StreamsConfig(**FAST)
    row, _ = measure_batched(make_labeller(FakeEngine(delay_s=0.12)), _live(2), cfg)  # ~8 batches/s
    assert not row.holds and row.drops_total > 0 and row.fps_median < 15


FAKE_LIVE = """
import json, sys, time
out, seed = sys.argv[1], int(sys.argv[2])
with open(out, "w") as f:
    i = 0
    try:
        while True:
            t = time.monotonic()
            if not (seed == 1 and i % 5 == 4):  # the second process drops every fifth frame
                f.write(json.dumps({"frame": i, "capture_time": t, "timings_ms": {"end_to_end": 2.0 + seed}}) + "\\n")
                f.flush()
            i += 1
            time.sleep(max(0.0, t + 1 / 30 - time.monotonic()))
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _fake_command(script: Path):  # noqa: ANN202 - the Command signature
    return lambda cfg, i, jsonl: [sys.executable, str(script), str(jsonl), str(i)]


def test_separate_processes_read_back_from_their_json_lines(tmp_path: Path) -> None:
    script = tmp_path / "fake_live.py"
    script.write_text(textwrap.dedent(FAKE_LIVE))
    row = measure_processes(StreamsConfig(**FAST), 2, tmp_path, _fake_command(script))
    assert (row.way, row.streams, row.batch, row.cpu_of) == ("processes", 2, 1, "2 processes")
    assert row.fps[0] > 25 and row.drops[0] == 0
    assert row.drops[1] >= 4 and row.fps[1] < row.fps[0]  # a fifth of its frames missing
    assert 2.0 <= row.e2e_p50_ms <= row.e2e_p99_ms <= 3.0
    assert row.cpu_pct >= 0 and not row.holds


def test_a_process_that_dies_is_reported_with_its_last_words(tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text("import sys\nprint('engine folder not found')\nsys.exit(2)\n")
    with pytest.raises(RuntimeError, match="process 0 exited with 2 mid-run: engine folder not found"):
        measure_processes(StreamsConfig(**FAST), 1, tmp_path, _fake_command(script))


def test_read_records_takes_single_source_lines_only(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    lines = [
        {"frame": 0, "capture_time": 1.0, "timings_ms": {"end_to_end": 3.0}},
        {"source_id": 1, "frame": 0, "capture_time": 1.0, "timings_ms": {"end_to_end": 3.0}},
    ]
    p.write_text("".join(json.dumps(d) + "\n" for d in lines) + '{"frame": 1, "capt')  # a torn last line
    assert read_records(p) == [(0, 1.0, 3.0)]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_a_stalled_source_does_not_slow_the_others() -> None:
    cfg = StreamsConfig(**{**FAST, "seconds": 3.0, "stall_s": 1.0})
    res = measure_stall(make_labeller(FakeEngine()), _live(3), cfg)
    assert res.streams == 3
    assert res.stalled_s == pytest.approx(1.0, abs=0.2)
    assert res.others_fps_outside > 20
    assert res.worst_drop_pct < 20  # the batcher stops waiting for the stalled source (the bench's limit: 5 %)
    assert res.stalled_frames_after > 0  # and takes it back when it returns
    with pytest.raises(FieldError, match="seconds 1 must be at least the stall"):
        measure_stall(make_labeller(FakeEngine()), _live(2), StreamsConfig(**{**FAST, "stall_s": 1.0}))


def _row(way: str, n: int, held: bool) -> StreamsRow:
    return StreamsRow(way, n, n if way == "batched" else 1, 10.0, 30.0, 0.95, (30.0 if held else 20.0,) * n,
                      (0,) * n, 5.0, 9.0, 50.0, "1 process")  # fmt: skip


def test_search_steps_each_way_until_it_fails() -> None:
    limits = {"batched": 6, "processes": 2}
    cfg = StreamsConfig("e", steps=(1, 2, 3, 4, 6, 8, 12))
    tried: list[tuple[str, int]] = []

    def measure(way: str, n: int) -> StreamsRow:
        tried.append((way, n))
        return _row(way, n, n <= limits[way])

    rows = search(cfg, measure)
    assert tried == [("batched", 1), ("processes", 1), ("batched", 2), ("processes", 2), ("batched", 3),
                     ("processes", 3), ("batched", 4), ("batched", 6), ("batched", 8)]  # fmt: skip
    rep = StreamsBenchReport(cfg, "fake engine", "machine: test", tuple(rows))
    assert (rep.held("batched"), rep.held("processes"), rep.capped("batched")) == (6, 2, False)
    text = "\n".join(format_report(rep))
    assert "largest N held, batched: 6\n" in text + "\n" and "batched / processes: 3x the streams" in text
    assert "| batched | 6 | 6 | 30.0 / 30.0 | 0 / 0 | 5.0 / 9.0 | 50 (1 process) | yes |" in text
    assert rep.to_dict()["held"] == {"batched": 6, "processes": 2}
    all_held = StreamsBenchReport(cfg, "e", "m", tuple(search(cfg, lambda w, n: _row(w, n, True), ("batched",))))
    assert all_held.capped("batched") and "(or more" in "\n".join(format_report(all_held))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--streams", "2"], "--streams needs a live source to copy; add --pipeline synthetic"),
        (["--pipeline", "synthetic", "--streams", "two"], "--streams two is not a stream count"),
        (
            ["--pipeline", "synthetic", "--streams", "2", "--backends", "openvino,onnxruntime"],
            "--streams measures one backend",
        ),
        (["--pipeline", "synthetic", "--streams", "auto", "--duration", "0"], "--duration 0 must be a positive"),
    ],
)
def test_bench_streams_flag_errors_are_one_sentence(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_app.cli import main

    rc = main(["bench", str(tmp_path / "engine"), *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {says}") and "Traceback" not in err


def test_processes_stop_on_ctrl_c_even_when_we_ignore_it(tmp_path: Path) -> None:
    """A bench started as a script's background job inherits SIGINT ignored; its `live` processes must still stop."""
    import signal
    import time

    script = tmp_path / "fake_live.py"
    script.write_text(textwrap.dedent(FAKE_LIVE))
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        t0 = time.monotonic()
        row = measure_processes(StreamsConfig(**FAST), 2, tmp_path, _fake_command(script))
    finally:
        signal.signal(signal.SIGINT, old)
    assert row.fps[0] > 25 and time.monotonic() - t0 < 10  # not the kill deadline of 15 s
