"""Sinks: video files per container with the exact frame rate, JSON lines in whole lines, the display check,
and what an interrupted run leaves behind (a real SIGINT / SIGKILL to a writer process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.frames.results import FrameResult, Label
from edge_app.video import sinks, video_file
from edge_app.video.sinks import DisplaySink, JsonlSink, VideoFileSink, close_all, open_sinks, read_jsonl
from tests.conftest import REPO
from tests.helpers import count_frames

NTSC = 30000 / 1001


def _frame(i: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A frame whose left part brightens with ``i`` (so frames differ) and a fixed colour block."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = min(255, 20 + 9 * i)
    img[h // 4 : h // 2, w // 2 :] = (0, 200, 255)
    return img


def _result(i: int) -> FrameResult:
    return FrameResult(i, 100.0 + i / 30, [Label(2, "square", 0.75, (1.0, 2.0, 30.0, 40.0))], {"inference": 4.5})


# ----------------------------------------------------------------------------------------------- video file
needs_pyav = pytest.mark.skipif(
    not sinks.pyav_available(), reason=f"PyAV is not installed ({sinks.PYAV_PIN} writes H.264)"
)


@pytest.mark.parametrize(
    "ext, asked, codec",
    [
        pytest.param(".mp4", None, "h264", marks=needs_pyav),
        pytest.param(".mkv", None, "h264", marks=needs_pyav),
        (".avi", None, "mjpeg"),
        (".webm", None, "vp9"),
        (".mp4", "mp4v", "mp4v"),
        (".mkv", "vp9", "vp9"),
    ],
)
def test_video_file_per_container_keeps_exact_fps(tmp_path: Path, ext: str, asked: str | None, codec: str) -> None:
    out = tmp_path / f"out{ext}"
    with VideoFileSink(out, NTSC, (320, 240), codec=asked) as sink:
        assert sink.codec == codec
        for i in range(8):
            sink.write(_frame(i), _result(i))
        # Only a finished file takes the real name (x264 holds its first frames back, so PyAV may not have
        # created the partial file yet either).
        assert not out.exists() and (sink.tmp.exists() or codec == "h264")
    assert out.is_file() and not sink.tmp.exists()
    cap = cv2.VideoCapture(str(out))
    assert abs(cap.get(cv2.CAP_PROP_FPS) - NTSC) < 1e-3  # 29.97, not rounded to 30
    frames = []
    while (r := cap.read())[0]:
        frames.append(r[1])
    assert len(frames) == 8 and frames[0].shape == (240, 320, 3)
    # Lossy codecs: compare the bright/dark halves, not exact pixels.
    assert abs(float(frames[7][:, :100].mean()) - (20 + 63)) < 12
    assert float(frames[0][:, :100].mean()) < float(frames[7][:, :100].mean())


@needs_pyav
def test_mp4_is_h264_yuv420p_at_the_exact_rate_with_moov_first(tmp_path: Path) -> None:
    import av

    out = tmp_path / "out.mp4"
    with VideoFileSink(out, NTSC, (321, 241)) as sink:  # odd size: padded, as 4:2:0 needs
        for i in range(10):
            sink.write(_frame(i, (321, 241)), _result(i))
    assert sink.rate == Fraction(30000, 1001)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert (v.width, v.height) == (322, 242)
        assert v.average_rate == Fraction(30000, 1001) and v.guessed_rate == Fraction(30000, 1001)
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == 10 and times == pytest.approx([i * 1001 / 30000 for i in range(10)])
    head = out.read_bytes()[:4096]
    assert b"moov" in head and (b"mdat" not in head or head.index(b"moov") < head.index(b"mdat"))  # +faststart


@needs_pyav
def test_h264_timestamps_follow_the_source_frame_numbers(tmp_path: Path) -> None:
    """A live run that dropped frames 3 and 4 still plays at real speed: the gap stays in the timestamps."""
    import av

    out = tmp_path / "live.mp4"
    with VideoFileSink(out, Fraction(25), (160, 120)) as sink:
        for i in (10, 11, 12, 15, 16):  # results as FrameResults and as their dicts (JSON lines) alike
            sink.write(_frame(i, (160, 120)), _result(i) if i % 2 else _result(i).to_dict())
        sink.write(_frame(17, (160, 120)), None)  # no result: the next frame
    with av.open(str(out)) as c:
        assert [round(f.time * 25) for f in c.decode(video=0)] == [0, 1, 2, 5, 6, 7]


def test_h264_without_pyav_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_file, "pyav_available", lambda: False)
    for args in ({"path": tmp_path / "a.mp4"}, {"path": tmp_path / "a.mkv", "codec": "h264"}):
        with pytest.raises(
            UserError,
            match=r"writing H.264 to '.*' needs PyAV, which is not installed; "
            r"pip install av==18.1.0, or write VP9 \(codec vp9, a .webm output\)",
        ):
            VideoFileSink(fps=30.0, size=(64, 48), **args)  # type: ignore[arg-type]
    with VideoFileSink(tmp_path / "a.webm", 30.0, (64, 48)) as sink:  # the licence-clean fallback still works
        assert sink.codec == "vp9"
        sink.write(_frame(0, (64, 48)), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.webm"]


def test_odd_size_is_padded_not_resampled(tmp_path: Path) -> None:
    out = tmp_path / "odd.avi"
    img = _frame(5, (641, 359))
    with VideoFileSink(out, 25.0, (641, 359)) as sink:
        assert sink.size == (642, 360)
        sink.write(img, None)
    ok, back = cv2.VideoCapture(str(out)).read()
    assert ok and back.shape == (360, 642, 3)
    assert np.abs(back[:359, :641].astype(int) - img.astype(int)).mean() < 4  # MJPG: near-exact


def test_frames_of_another_size_are_resized(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with VideoFileSink(tmp_path / "a.avi", 10.0, (160, 120)) as sink:
        sink.write(_frame(0, (320, 240)), None)
        sink.write(_frame(1, (320, 240)), None)
    assert sink.frames == 2 and "resized to the video's 160x120" in caplog.text
    assert cv2.VideoCapture(str(tmp_path / "a.avi")).get(cv2.CAP_PROP_FRAME_COUNT) == 2


def test_close_is_idempotent_and_no_frames_makes_no_file(tmp_path: Path) -> None:
    sink = VideoFileSink(tmp_path / "empty.mp4", 30.0, (64, 48))
    sink.close()
    sink.close()
    assert not (tmp_path / "empty.mp4").exists() and not sink.tmp.exists()
    with pytest.raises(RuntimeError, match="is closed"):
        sink.write(_frame(0, (64, 48)), None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"path": "out.gif"}, r"unknown extension '.gif'; use one of .mp4"),
        ({"fps": 0}, r"at 0 fps; the frame rate must be positive"),
        ({"size": (0, 10)}, r"of size 0x10; width and height must be positive"),
        ({"codec": "ZZZZ"}, r"codec 'ZZZZ' is unknown; choose one of h264, vp9, mjpeg, mp4v"),
        (
            {"codec": "h264"},
            r"cannot write h264 into '.*out.avi': a .avi file takes mjpeg, mp4v; use a .mp4 output for h264",
        ),
        ({"path": "out.webm", "codec": "mp4v"}, r"a .webm file takes vp9; use a .mp4 output for mp4v"),
        ({"path": "folder.mp4"}, r"cannot write video '.*folder.mp4': it is a folder; give a file name"),
    ],
)
def test_video_file_bad_input(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"path": "out.avi", "fps": 30.0, "size": (64, 48), **kwargs}
    args["path"] = tmp_path / args["path"]
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(UserError, match=match):
        VideoFileSink(**args)
    assert [p.name for p in tmp_path.iterdir()] == ["folder.mp4"]  # nothing written, no partial file


@pytest.mark.parametrize("name", [pytest.param("out.mp4", marks=needs_pyav), "out.webm", "out.avi"])
def test_unwritable_output_path(tmp_path: Path, name: str) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(
        UserError, match=r"^cannot write to folder '.*file.txt' \([^)]+\); choose a writable output folder$"
    ):
        VideoFileSink(blocker / name, 30.0, (64, 48))
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
    with pytest.raises(UserError, match=r"cannot write to folder '.*file.txt'"):
        JsonlSink(blocker / "out.jsonl")


# ----------------------------------------------------------------------------------------------- JSON lines
def test_jsonl_lines_are_frame_results_flushed_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(path, flush_every=4, flush_interval_s=60)
    for i in range(6):
        sink.write(None, _result(i))
    assert len(read_jsonl(path)) == 4  # one full batch on disk, the rest queued
    sink.close()
    sink.close()
    rows = read_jsonl(path)
    assert [r["frame"] for r in rows] == list(range(6))
    assert rows[1] == _result(1).to_dict()
    assert rows[1]["labels"][0]["box"] == [1.0, 2.0, 30.0, 40.0]


def test_jsonl_flushes_by_time_for_slow_streams(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl", flush_every=1000, flush_interval_s=0.05)
    sink.write(None, _result(0))
    time.sleep(0.06)
    sink.write(None, _result(1))
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 2
    sink.close()


def test_jsonl_append_drops_a_torn_line_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = [json.dumps(_result(i).to_dict()) for i in range(3)]
    path.write_text("\n".join(good) + '\n{"frame": 3, "capt')  # killed mid-line
    assert len(read_jsonl(path)) == 3
    with JsonlSink(path, append=True) as sink:
        assert sink.existing_lines == 3
        sink.write(None, _result(3))
    assert [r["frame"] for r in read_jsonl(path)] == [0, 1, 2, 3]
    assert path.read_text().count("\n") == 4


# ----------------------------------------------------------------------------------------------- interrupts
WRITER = """
import sys, time, numpy as np
from edge_app.frames.results import FrameResult
from edge_app.video.sinks import JsonlSink, VideoFileSink
out = sys.argv[1]
with VideoFileSink(out + "/run.mp4", 30.0, (96, 64)) as v, JsonlSink(out + "/run.jsonl", flush_every=5) as j:
    i = 0
    while True:
        img = np.full((64, 96, 3), i % 255, np.uint8)
        v.write(img, None)
        j.write(None, FrameResult(i, time.monotonic()))
        i += 1
        if i == 20:
            print("ready", flush=True)
        time.sleep(0.005)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_writer_leaves_valid_output(tmp_path: Path, sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        p.send_signal(sig)
        p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rows = read_jsonl(tmp_path / "run.jsonl")
    text = (tmp_path / "run.jsonl").read_text()
    assert text.endswith("\n") and len(rows) == text.count("\n")  # only whole lines reach the file
    assert [r["frame"] for r in rows] == list(range(len(rows))) and len(rows) >= 20
    if sig == signal.SIGINT:  # Ctrl-C: with-blocks close the sinks, so everything is there and playable
        n = count_frames(tmp_path / "run.mp4")
        assert n >= 20 and n in (len(rows), len(rows) + 1)  # the JSON line of the last frame may be pending
        assert not list(tmp_path.glob(".run.partial*"))
    else:  # killed outright: the real name never holds a half-written video
        assert not (tmp_path / "run.mp4").exists()


# ----------------------------------------------------------------------------------------------- display
def test_display_is_skipped_with_a_message_without_a_screen(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    sinks.display_available.cache_clear()
    try:
        with DisplaySink("test") as d:
            assert not d.enabled and "no DISPLAY or WAYLAND_DISPLAY" in d.reason
            d.write(_frame(0), None)  # a no-op, not an abort
            assert d.key_pressed() == -1
    finally:
        sinks.display_available.cache_clear()
    assert "--serve 127.0.0.1:8080" in caplog.text


# ----------------------------------------------------------------------------------------------- helpers
def test_open_sinks_opens_all_and_closes_on_failure(tmp_path: Path) -> None:
    opened = open_sinks(
        fps=25.0, size=(64, 48), video=tmp_path / "a.avi", jsonl=tmp_path / "a.jsonl", serve="127.0.0.1:0"
    )
    try:
        assert [type(s).__name__ for s in opened] == ["VideoFileSink", "JsonlSink", "MjpegSink"]
        port = opened[2].port
        for s in opened:
            s.write(_frame(0, (64, 48)), _result(0))
    finally:
        close_all(opened)
    assert (tmp_path / "a.avi").is_file() and len(read_jsonl(tmp_path / "a.jsonl")) == 1
    # The port is still taken by another sink here: the second set fails and closes what it opened.
    with open_sinks(fps=25.0, size=(64, 48), serve="127.0.0.1:0")[0] as held:
        with pytest.raises(UserError, match=rf"port {held.port} on 127.0.0.1 is already in use"):
            open_sinks(fps=25.0, size=(64, 48), video=tmp_path / "b.avi", serve=f"127.0.0.1:{held.port}")
    assert not list(tmp_path.glob(".b.partial*")) and port > 0


def test_close_all_closes_every_sink_then_reraises() -> None:
    closed: list[str] = []

    class Bad:
        def close(self) -> None:
            closed.append("bad")
            raise OSError("disk full")

    class Good:
        def close(self) -> None:
            closed.append("good")

    with pytest.raises(OSError, match="disk full"):
        close_all([Bad(), Good()])
    assert closed == ["bad", "good"]


# ----------------------------------------------------------------------------------------------- --codec
def _codec_of(path: Path) -> tuple[str, int]:
    """(codec name, frame count) of a video file, decoded back with OpenCV's FFmpeg."""
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace").lower()
    n = 0
    while cap.read()[0]:
        n += 1
    return fourcc, n


def test_cli_codec_reaches_the_video_file(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_app.cli import main
    from tests.helpers import write_tiny_video

    video = write_tiny_video(tmp_path / "in.mp4", frames=6, size=(96, 64))
    assert (
        main(
            [
                "annotate",
                str(video),
                "--engine",
                str(tiny_engine),
                "--out",
                str(tmp_path / "a.webm"),
                "--codec",
                "vp9",
                "--no-progress",
            ]
        )
        == 0
    )
    assert _codec_of(tmp_path / "a.webm") == ("vp90", 6)
    assert (
        main(
            [
                "live",
                "--engine",
                str(tiny_engine),
                "--source",
                "synthetic?frames=5",
                "--save",
                str(tmp_path / "l.mp4"),
                "--codec",
                "mp4v",
            ]
        )
        == 0
    )
    codec, n = _codec_of(tmp_path / "l.mp4")
    assert codec == "fmp4" and 1 <= n <= 5  # FFmpeg's tag for MPEG-4 part 2; a live source may drop frames
    # A codec the container cannot hold: one sentence naming the fix, exit 2, nothing written.
    assert (
        main(
            [
                "annotate",
                str(video),
                "--engine",
                str(tiny_engine),
                "--out",
                str(tmp_path / "b.mp4"),
                "--codec",
                "vp9",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot write vp9 into" in err and "use a .webm output for vp9" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*b.*"))
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main(["live", "--engine", str(tiny_engine), "--save", str(tmp_path / "x.mp4"), "--codec", "hevc"])
    assert "invalid choice: 'hevc'" in capsys.readouterr().err


@needs_pyav
def test_h264_encoder_thread_keeps_colours_and_owns_its_copy(tmp_path: Path) -> None:
    """write() converts to I420 on the caller's thread (the copy) and returns; the encoder thread encodes.
    The caller reuses one array for every frame, as a camera loop may: each frame still reaches the file."""
    import av

    shades = [(40, 120, 200), (200, 40, 120), (120, 200, 40), (250, 250, 250), (5, 5, 5)]
    buf = np.empty((240, 320, 3), np.uint8)
    out = tmp_path / "colours.mp4"
    with VideoFileSink(out, 25, (320, 240)) as sink:
        for i, bgr in enumerate(shades):
            buf[:] = bgr
            sink.write(buf, _result(i))
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="bgr24").reshape(-1, 3).mean(axis=0) for f in c.decode(video=0)]
    assert len(got) == len(shades)
    for mean, want in zip(got, shades):
        assert np.abs(mean - np.array(want)).max() < 4, (mean, want)  # BT.601 limited range both ways


@needs_pyav
def test_h264_encoder_failure_is_raised_by_write_or_close_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "broken.mp4"
    sink = VideoFileSink(out, 25, (64, 48))

    class Boom(RuntimeError):
        pass

    class FailingStream:  # PyAV's stream is a C type: stand in for the encoding call only
        def encode(self, frame: object) -> list:
            raise Boom("x264 refused the frame")

    monkeypatch.setattr(sink.writer, "stream", FailingStream())
    with pytest.raises(Boom, match="x264 refused"):
        for i in range(50):  # the queue holds a few frames: the error surfaces on a later write
            sink.write(_frame(i, (64, 48)), _result(i))
    with pytest.raises(Boom, match="x264 refused"):  # close says it too (the loop closes sinks after an error)
        sink.close()
    sink.close()  # then closing again is a no-op
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
