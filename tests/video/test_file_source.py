"""Video files through PyAV: presentation times, variable frame rates, exact decode failures, real-time pace,
and FFmpeg's own log kept out of the user's terminal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_app.video.sources import open_source
from tests.conftest import REPO
from tests.video.conftest import NEEDS_FFMPEG, free_port, make_vfr_video, make_video

VFR_TIMES = [0.0, 0.1, 0.2, 1.0, 1.1, 2.5, 2.6, 2.7, 4.0, 4.05]


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate_file_has_no_decode_errors_and_carries_its_times(tmp_path: Path, ext: str) -> None:
    # An .mkv has no frame count: duration x rate claims 42 frames, and the old reader called 32 of them damaged.
    path = make_vfr_video(tmp_path / f"vfr.{ext}", VFR_TIMES)
    src = open_source(str(path))
    frames = list(src)
    assert len(frames) == len(VFR_TIMES) and src.decode_errors == 0
    assert [f.media_time for f in frames] == pytest.approx(VFR_TIMES, abs=1e-3)
    assert [f.index for f in frames] == list(range(len(VFR_TIMES)))


@NEEDS_FFMPEG
def test_decode_failures_are_counted_exactly(tmp_path: Path) -> None:
    full = make_video(tmp_path / "full.mp4", "libx264", frames=60, extra=("-g", "10", "-movflags", "+faststart"))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    src = open_source(str(cut))
    frames = list(src)
    assert 0 < len(frames) < 60 and len(frames) + src.decode_errors == 60
    assert frames[1].media_time == pytest.approx(1001 / 30000, abs=1e-4)


def test_a_file_paced_plays_at_its_own_rate_or_the_asked_one(tmp_path: Path) -> None:
    path = make_vfr_video(tmp_path / "v.mkv", [0.0, 0.2, 0.4, 0.6, 0.8])
    t0 = time.monotonic()
    assert len(list(open_source(str(path)))) == 5
    fast = time.monotonic() - t0
    src = open_source(str(path), pace=True)
    assert src.live  # delivered as a camera would: the loop may drop what it cannot keep up with
    t0 = time.monotonic()
    assert len(list(src)) == 5
    own = time.monotonic() - t0
    t0 = time.monotonic()
    assert len(list(open_source(str(path), pace=True, fps=10.0))) == 5  # the file is 5 fps: twice as fast
    doubled = time.monotonic() - t0
    assert fast < 0.3 and 0.75 < own < 1.5 and 0.35 < doubled < 0.75, (fast, own, doubled)


def _quiet_run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


OPEN = """
import logging, sys
from edge_app.errors import UserError
from edge_app.video.base import ReconnectPolicy
from edge_app.video.sources import open_source
if sys.argv[2] == "verbose":
    logging.basicConfig(level=logging.DEBUG)
try:
    list(open_source(sys.argv[1], reconnect=ReconnectPolicy(open_attempts=1, open_timeout_s=2)))
except UserError as e:
    print(f"error: {e}", file=sys.stderr)
"""


@NEEDS_FFMPEG
def test_ffmpeg_log_is_silent_unless_verbose(tmp_path: Path) -> None:
    full = make_video(tmp_path / "full.mp4", "libx264", frames=30)  # index at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:4000])
    rtsp = f"rtsp://127.0.0.1:{free_port()}/live"  # nothing listens there
    for uri, said in ((str(cut), "cannot read video"), (rtsp, "cannot open stream")):
        quiet = _quiet_run(OPEN, uri, "quiet").stderr.strip().splitlines()
        assert len(quiet) == 1 and quiet[0].startswith("error: ") and said in quiet[0], quiet
        loud = _quiet_run(OPEN, uri, "verbose").stderr
        assert len(loud.strip().splitlines()) > 1, loud


def test_live_plays_a_file_at_its_own_rate_unless_told(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    from edge_app.cli import main

    path = make_vfr_video(tmp_path / "v.mkv", [i / 10 for i in range(10)])  # 10 frames at 10 fps: 0.9 s
    base = ["live", "--engine", str(tiny_engine), "--source", str(path), "--no-hud"]
    span = {}
    for name, extra in (("own", []), ("fps", ["--fps", "20"]), ("max", ["--max-speed"])):
        jl = tmp_path / f"{name}.jsonl"
        assert main([*base, *extra, "--jsonl", str(jl)]) == 0
        times = [json.loads(s)["capture_time"] for s in jl.read_text().splitlines()]
        span[name] = times[-1] - times[0]  # first to last frame delivered by the source (engine start aside)
    capsys.readouterr()
    assert 0.8 < span["own"] < 1.2 and 0.4 < span["fps"] < 0.7 and span["max"] < 0.3, span
    media = [json.loads(s)["media_time"] for s in (tmp_path / "max.jsonl").read_text().splitlines()]
    assert media == pytest.approx([i / 10 for i in range(10)], abs=1e-3)
