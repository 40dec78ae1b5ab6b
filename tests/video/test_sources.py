"""open_source: URI dispatch, image folders and globs, the live synthetic source, flip/resize, bad input."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.video.sources import DEFAULT_IMAGE_FPS, Frame, ImageSource, ReconnectPolicy, SyntheticSource, open_source
from tests.video.conftest import free_port


def _pattern(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    """An asymmetric image, so every flip gives a different result."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i:03d}.png"), _pattern(seed=i))
    (d / "003.png").write_bytes(b"not a png")  # counted as a decode error, skipped
    (d / "notes.txt").write_text("ignored: not an image")
    return d


# ----------------------------------------------------------------------------------------------- images
def test_image_folder_reads_sorted_images_and_counts_unreadable(image_dir: Path) -> None:
    src = open_source(str(image_dir))
    assert isinstance(src, ImageSource) and not src.live
    assert src.fps == DEFAULT_IMAGE_FPS and src.size == (60, 40) and src.frame_count == 4
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2]
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.image, _pattern(seed=i))
    assert src.decode_errors == 1


def test_image_glob_and_fps_request(image_dir: Path) -> None:
    src = open_source(str(image_dir / "00[12].png"), fps=12.5)
    assert src.fps == 12.5
    assert len(list(src)) == 2


def test_single_image_file_is_one_frame(image_dir: Path) -> None:
    frames = list(open_source(str(image_dir / "001.png")))
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0].image, _pattern(seed=1))


@pytest.mark.parametrize("flip, code", [("h", 1), ("v", 0), ("180", -1)])
def test_flip(image_dir: Path, flip: str, code: int) -> None:
    f = next(iter(open_source(str(image_dir / "000.png"), flip=flip)))
    np.testing.assert_array_equal(f.image, cv2.flip(_pattern(seed=0), code))


def test_requested_size_resizes_every_frame_and_images_of_other_sizes(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), _pattern(40, 60))
    cv2.imwrite(str(tmp_path / "b.png"), _pattern(90, 30))  # another size: must still come out at src.size
    src = open_source(str(tmp_path), width=32, height=24)
    assert src.size == (32, 24)
    assert [f.image.shape for f in src] == [(24, 32, 3), (24, 32, 3)]
    src = open_source(str(tmp_path))  # no request: the first image sets the size
    assert [f.image.shape for f in src] == [(40, 60, 3), (40, 60, 3)]


def test_loop_restarts_images(image_dir: Path) -> None:
    frames = list(itertools.islice(open_source(str(image_dir / "00[01].png"), loop=True), 5))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(frames[2].image, frames[0].image)


# ----------------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_live_paced_and_carries_truth() -> None:
    src = open_source("synthetic?frames=6&seed=2&objects=2", width=160, height=120, fps=50)
    assert isinstance(src, SyntheticSource) and src.live
    assert src.fps == 50 and src.size == (160, 120) and src.frame_count == 6
    t0 = time.monotonic()
    frames: list[Frame] = list(src)
    elapsed = time.monotonic() - t0
    assert [f.index for f in frames] == list(range(6))
    assert elapsed >= 5 / 50 * 0.9  # paced like a camera, not rendered as fast as possible
    times = [f.capture_time for f in frames]
    assert times == sorted(times) and t0 <= times[0]
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.truth is not None and len(f.truth) == 2 for f in frames)
    x1, y1, x2, y2 = frames[0].truth[0]["box"]  # type: ignore[index]
    assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120


def test_synthetic_is_deterministic_by_seed() -> None:
    a = next(iter(open_source("synthetic?frames=1&seed=5", width=96, height=64)))
    b = next(iter(open_source("synthetic?frames=1&seed=5", width=96, height=64)))
    c = next(iter(open_source("synthetic?frames=1&seed=6", width=96, height=64)))
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


def test_synthetic_replay_repeats_the_first_frames_as_fresh_copies() -> None:
    """replay=N renders N frames once and plays them in turn (what `bench --pipeline --streams` uses to measure
    the loop rather than the renderer): the same pictures and truth as the rendered video's first N, each
    delivered as its own array, so a sink drawing on one never marks a later round."""
    rendered = [f.image for f in open_source("synthetic?frames=3&seed=4", width=96, height=64, fps=300)]
    src = open_source("synthetic?frames=7&seed=4&replay=3", width=96, height=64, fps=300)
    frames = list(src)
    assert [f.index for f in frames] == list(range(7)) and src.frame_count == 7
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.image, rendered[i % 3])
    frames[0].image[:] = 0  # a sink drawing in place
    assert frames[3].image is not frames[0].image and frames[3].image.any()
    assert frames[1].truth == frames[4].truth
    with pytest.raises(UserError, match="replay='x' is not a whole number"):
        open_source("synthetic?replay=x")


def test_close_from_another_thread_stops_an_endless_live_source() -> None:
    src = open_source("synthetic", width=96, height=64, fps=30)
    assert src.frame_count is None
    got: list[int] = []

    def consume() -> None:
        for f in src:
            got.append(f.index)

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    src.close()
    th.join(timeout=2)
    assert not th.is_alive() and len(got) >= 3
    src.close()  # idempotent


def test_reconnect_policy_backoff_doubles_up_to_the_cap() -> None:
    d = ReconnectPolicy(initial_delay_s=0.5, factor=2, max_delay_s=3).delays()
    assert list(itertools.islice(d, 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "uri, kw, match",
    [
        ("foo://bar", {}, r"scheme 'foo://' is not supported"),
        ("no/such/video.mp4", {}, r"source 'no/such/video.mp4' was not found"),
        ("97", {}, r"camera 97 was not found \(no /dev/video97\)"),
        ("/dev/video97", {}, r"camera device '/dev/video97' does not exist"),
        ("nothing-here-*.png", {}, r"pattern 'nothing-here-\*.png' matches no images"),
        ("gst:videotestsrc ! appsink", {}, r"needs OpenCV built with GStreamer"),
        ("gst:", {}, r"'gst:' needs a pipeline"),
        ("csi://0", {}, r"needs OpenCV built with GStreamer"),
        ("csi://left", {}, r"needs a sensor number; use csi://0"),
        ("synthetic?speed=3", {}, r"synthetic option 'speed' is unknown"),
        ("synthetic?frames=x", {}, r"frames='x' is not a whole number"),
        ("synthetic", {"flip": "diagonal"}, r"--flip 'diagonal' is not supported; use one of h, v, 180"),
        ("synthetic", {"fps": 0}, r"--fps 0 is not a valid frame rate"),
        ("synthetic", {"width": 320}, r"--width 320 and --height None must be given together"),
        ("synthetic", {"width": -2, "height": 10}, r"--width -2 is not a valid size"),
    ],
)
def test_bad_sources_raise_one_clear_sentence(uri: str, kw: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        open_source(uri, **kw)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "clip.txt").write_text("no images")
    with pytest.raises(UserError, match=r"holds no images"):
        open_source(str(tmp_path))


def test_unreadable_images_only_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(UserError, match=r"none of the first images .* can be read"):
        open_source(str(tmp_path))


def test_unreachable_stream_retries_then_fails_clearly() -> None:
    port = free_port()  # nothing listens: connection refused on every attempt
    policy = ReconnectPolicy(open_attempts=2, initial_delay_s=0.05, open_timeout_s=2, read_timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(UserError, match=rf"cannot open stream 'rtsp://127.0.0.1:{port}/cam' after 2 tries"):
        open_source(f"rtsp://127.0.0.1:{port}/cam", reconnect=policy)
    assert time.monotonic() - t0 < 15
