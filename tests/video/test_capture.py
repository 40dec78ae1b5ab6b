"""OpenCV capture sources against real files made by ffmpeg: containers, codecs, odd sizes, damage, loop,
and the reconnect loop of live captures."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.video.capture import CaptureSource
from edge_app.video.gstreamer import csi_pipeline
from edge_app.video.sources import ReconnectPolicy, open_source
from tests.video.conftest import NEEDS_FFMPEG, ffmpeg_encoders, make_video

NTSC = 30000 / 1001  # 29.97...: must come back exact, not rounded to 30

pytestmark = NEEDS_FFMPEG


@pytest.mark.parametrize(
    "name, codec, size, pix_fmt",
    [
        ("h264.mp4", "libx264", (320, 240), "yuv420p"),
        ("h264.mkv", "libx264", (320, 240), "yuv420p"),
        ("mjpeg.avi", "mjpeg", (320, 240), "yuvj420p"),
        ("vp8.webm", "libvpx", (320, 240), "yuv420p"),
        ("odd_h264_444.mkv", "libx264", (641, 359), "yuv444p"),
        ("odd_mjpeg.avi", "mjpeg", (641, 359), "yuvj444p"),
        ("odd_vp8.webm", "libvpx", (641, 359), "yuv420p"),
        ("odd_ffv1.mkv", "ffv1", (641, 359), "bgr0"),
    ],
)
def test_containers_codecs_and_odd_sizes(
    tmp_path: Path, name: str, codec: str, size: tuple[int, int], pix_fmt: str
) -> None:
    if codec not in ffmpeg_encoders():
        pytest.skip(f"this ffmpeg has no {codec} encoder")
    path = make_video(tmp_path / name, codec, size=size, frames=12, pix_fmt=pix_fmt)
    src = open_source(str(path))
    assert not src.live and src.status == "ok"
    assert src.size == size and src.frame_count == 12
    assert abs(src.fps - NTSC) < 1e-6, src.fps
    frames = list(src)
    src.close()
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (size[1], size[0], 3) and f.image.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0].image, frames[-1].image)  # testsrc moves: real decoded frames
    assert src.decode_errors == 0


def test_truncated_file_counts_decode_errors_and_ends_cleanly(tmp_path: Path) -> None:
    full = make_video(tmp_path / "full.mp4", "libx264", frames=60, extra=("-g", "10", "-movflags", "+faststart"))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])  # index at the front says 60 frames; the data stops early
    src = open_source(str(cut))
    assert src.frame_count == 60
    frames = list(src)
    assert 0 < len(frames) < 60
    assert [f.index for f in frames] == list(range(len(frames)))
    assert src.decode_errors == 60 - len(frames)


def test_damaged_packets_are_skipped_not_fatal(tmp_path: Path) -> None:
    full = make_video(tmp_path / "full.mp4", "libx264", frames=60, extra=("-g", "10", "-movflags", "+faststart"))
    data = bytearray(full.read_bytes())
    for k in range(4):  # zero out runs of bytes in the middle of the stream
        at = len(data) // 3 + k * len(data) // 12
        data[at : at + 1500] = bytes(1500)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    src = open_source(str(bad))
    frames = list(src)
    assert len(frames) + src.decode_errors == 60
    assert len(frames) > 30  # reading went on past the damage


def test_file_cut_before_its_index_is_refused(tmp_path: Path) -> None:
    full = make_video(tmp_path / "full.mp4", "libx264", frames=30)  # index (moov) at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:4000])
    with pytest.raises(UserError, match=r"cannot read video '.*cut.mp4' .* re-encode it with: ffmpeg"):
        open_source(str(cut))


def test_not_a_video_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "notes.mp4"
    p.write_text("hello")
    with pytest.raises(UserError, match=r"cannot read video '.*notes.mp4'"):
        open_source(str(p))


def test_loop_restarts_a_file_and_flip_resize_apply(tmp_path: Path) -> None:
    path = make_video(tmp_path / "five.avi", "mjpeg", frames=5, pix_fmt="yuvj420p")
    plain = [f.image for f in open_source(str(path))]
    src = open_source(str(path), loop=True, flip="v", width=160, height=120)
    frames = list(itertools.islice(src, 12))
    src.close()
    assert [f.index for f in frames] == list(range(12))
    assert src.size == (160, 120) and frames[0].image.shape == (120, 160, 3)
    want = cv2.flip(cv2.resize(plain[1], (160, 120), interpolation=cv2.INTER_AREA), 0)
    np.testing.assert_array_equal(frames[6].image, want)  # frame 6 = second frame of the second pass


def test_fps_request_is_ignored_for_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_video(tmp_path / "a.mkv", "libx264", frames=3)
    src = open_source(str(path), fps=10)
    assert abs(src.fps - NTSC) < 1e-6
    assert "files keep their real frame rate" in caplog.text


def test_live_capture_reconnects_with_backoff(tmp_path: Path) -> None:
    """A live capture whose device stops delivering is reopened inside the iterator; status tells the HUD."""
    path = make_video(tmp_path / "cam.mkv", "libx264", frames=4)
    calls: list[str] = []
    src: CaptureSource

    def opener() -> cv2.VideoCapture:
        # Plays the file like a camera; after the first open, it is "unplugged" for two attempts.
        calls.append(src.status if calls else "first")
        if len(calls) in (2, 3):
            return cv2.VideoCapture()  # not opened: the device is gone
        return cv2.VideoCapture(str(path))

    policy = ReconnectPolicy(initial_delay_s=0.02, max_delay_s=0.05)
    src = CaptureSource("fake-cam", opener, live=True, cannot_open="cannot open fake-cam", policy=policy)
    t0 = time.monotonic()
    frames = list(itertools.islice(src, 10))
    src.close()
    assert [f.index for f in frames] == list(range(10))
    assert calls[:4] == ["first", "reconnecting", "reconnecting", "reconnecting"]
    assert src.reconnects >= 2 and src.status == "ok" and src.frame_count is None
    assert time.monotonic() - t0 < 5


def test_released_captures_hand_their_heap_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reconnect and each file restart trims the C heap after releasing the old capture (FFmpeg's freed
    decoder buffers otherwise stay resident: +13-16 MB per RTSP reconnect in the soak)."""
    import sys

    from edge_app.video import base, capture, file_source

    if sys.platform.startswith("linux") and base._malloc_trim is not None:
        assert base.trim_heap() is True  # glibc: the real call runs
    trims: list[str] = []
    for module in (capture, file_source):
        monkeypatch.setattr(module, "trim_heap", lambda: trims.append("trim") or True)
    path = make_video(tmp_path / "cam.mkv", "libx264", frames=3)
    opened: list[int] = []

    def opener() -> cv2.VideoCapture:
        opened.append(1)
        return cv2.VideoCapture() if len(opened) == 2 else cv2.VideoCapture(str(path))  # one refused reopen

    policy = ReconnectPolicy(initial_delay_s=0.01, max_delay_s=0.02)
    src = CaptureSource("fake-cam", opener, live=True, cannot_open="x", policy=policy)
    list(itertools.islice(src, 5))  # 3 frames, the device "unplugged", reopened, 2 more
    src.close()
    assert src.reconnects == 1 and trims == ["trim", "trim"]  # after the release, and after the refused open
    trims.clear()
    looped = open_source(str(path), loop=True)
    list(itertools.islice(looped, 7))  # two restarts
    looped.close()
    assert trims == ["trim", "trim"]


def test_live_capture_gives_up_when_told(tmp_path: Path) -> None:
    path = make_video(tmp_path / "cam.mkv", "libx264", frames=2)
    opened: list[int] = []

    def opener() -> cv2.VideoCapture:
        opened.append(1)
        return cv2.VideoCapture(str(path)) if len(opened) == 1 else cv2.VideoCapture()

    policy = ReconnectPolicy(initial_delay_s=0.02, max_delay_s=0.05, give_up_after_s=0.3)
    src = CaptureSource("fake-cam", opener, live=True, cannot_open="x", policy=policy)
    with pytest.raises(UserError, match=r"source 'fake-cam' did not come back within 0.3 s"):
        list(itertools.islice(src, 100))
    assert src.status == "reconnecting"


def test_csi_pipeline_string() -> None:
    p = csi_pipeline(1, 1920, 1080, NTSC, flip="180")
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=(int)1920, height=(int)1080" in p and "framerate=(fraction)30000/1001" in p
    assert "flip-method=2" in p and p.endswith("appsink drop=true max-buffers=1 sync=false")
