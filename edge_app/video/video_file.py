"""Video files out: H.264 through PyAV (timestamps of the source), VP9 / MJPEG / mp4v through OpenCV.

:class:`VideoFileSink` is a context manager that only ever leaves a complete, playable file at its path.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.errors import UserError
from edge_app.fsutil import ensure_writable_dir
from edge_app.video.base import SinkBase
from edge_app.video.library_logs import apply_library_logs

log = logging.getLogger("edge_app.video")

# What each container can hold, its default first. H.264 (through PyAV, whose wheels bundle libx264) is the
# one codec every browser and phone plays; pip's opencv-python cannot encode it. VP9 in WebM is the
# licence-clean alternative OpenCV writes itself; mp4v (MPEG-4 part 2) plays in VLC but in no browser, so it
# is written only when asked for.
CODECS = ("h264", "vp9", "mjpeg", "mp4v")
CODECS_BY_EXT: dict[str, tuple[str, ...]] = {
    ".mp4": ("h264", "mp4v"),
    ".m4v": ("h264", "mp4v"),
    ".mov": ("h264", "mp4v", "mjpeg"),
    ".mkv": ("h264", "vp9", "mjpeg", "mp4v"),
    ".webm": ("vp9",),
    ".avi": ("mjpeg", "mp4v"),
}
HOME_EXT = {"h264": ".mp4", "vp9": ".webm", "mjpeg": ".avi", "mp4v": ".mp4"}  # the usual container per codec
OPENCV_FOURCC = {"vp9": "VP90", "mjpeg": "MJPG", "mp4v": "mp4v"}  # codecs OpenCV's own FFmpeg writes
PYAV_PIN = "av==18.1.0"  # requirements.txt; av 19 needs Python >= 3.12
X264_OPTIONS = {
    "preset": "veryfast",
    "crf": "23",
}  # 474 fps at 640x480 on 2 cores (FACTS.md); crf 23: x264's default quality


def _frame_index(result: Any) -> int | None:
    """The source's frame number of ``result`` (a FrameResult or its dict), or None when there is none."""
    index = result.get("frame") if isinstance(result, dict) else getattr(result, "index", None)
    return index if isinstance(index, int) else None


def _media_time(result: Any) -> float | None:
    """Seconds into the source file of ``result`` (a FrameResult or its dict), or None (live, or not known)."""
    t = result.get("media_time") if isinstance(result, dict) else getattr(result, "media_time", None)
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def pyav_available() -> bool:
    """Whether PyAV (H.264 writing) is installed; checked without importing it."""
    return importlib.util.find_spec("av") is not None


def _as_rate(fps: float | Fraction) -> Fraction:
    """The frame rate as a fraction: NTSC's 29.97 float becomes exactly 30000/1001."""
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def ticks_per_frame(rate: Fraction) -> int:
    """Timestamp ticks per frame: about one per millisecond, a whole number so frame times stay exact."""
    return max(1, math.ceil(1000 / rate))


def tick(rate: Fraction) -> Fraction:
    """The H.264 writer's time base: 1 / (rate x :func:`ticks_per_frame`)."""
    return 1 / (rate * ticks_per_frame(rate))


class _PyAvWriter:
    """H.264 yuv420p through PyAV, timestamps in units of one frame, ``moov`` at the front for streaming.

    Encoding runs on its own thread (x264 adds its own threads under it), fed through a short queue, so the
    loop's writer thread only converts the frame to I420 (OpenCV: ~1 ms for 720p, half of what swscale
    takes inside PyAV) and moves on. The conversion is also the copy the encoder needs: the caller may reuse
    its array as soon as ``write`` returns. An encoder error is raised by the next ``write`` or ``close``.
    """

    QUEUE = 8  # frames converted but not yet encoded; a full queue makes write() wait (files never drop)

    def __init__(self, path: Path, rate: Fraction, size: tuple[int, int]) -> None:
        import av

        options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
        self.container = av.open(str(path), "w", options=options)
        try:
            self.stream = self.container.add_stream("libx264", rate=rate, options=dict(X264_OPTIONS))
            self.stream.width, self.stream.height = size
            self.stream.pix_fmt = "yuv420p"  # 4:2:0: what browsers decode (x264 would pick 4:4:4 for RGB input)
            # Timestamps count in ticks of 1/k of a frame at the source's exact rate (k: about a millisecond),
            # so a constant-rate video stays on its exact grid and a variable-rate one keeps its own times.
            # Kept here: the muxer replaces the stream's time base with its own once it writes the header.
            self.time_base = tick(rate)
            self.stream.time_base = self.time_base
            self.stream.codec_context.time_base = self.time_base  # else x264 rounds times to whole frames
        except BaseException:
            self.container.close()
            raise
        self._frame_cls = av.VideoFrame
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_loop, name="h264-encoder", daemon=True)
        self._thread.start()

    def _encode_loop(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                i420, pts = item
                frame = self._frame_cls.from_ndarray(i420, format="yuv420p")
                frame.pts, frame.time_base = pts, self.time_base
                for packet in self.stream.encode(frame):  # PyAV releases the GIL while x264 works
                    self.container.mux(packet)
            for packet in self.stream.encode(None):  # flush the frames x264 still holds (lookahead)
                self.container.mux(packet)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread by write()/close()
            self._error = e
            while True:  # unblock a write() waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, bgr: np.ndarray, pts: int) -> None:
        self._raise_error()
        i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # BT.601 limited range, as swscale's default
        while True:
            try:
                self._queue.put((i420, pts), timeout=0.1)
                return
            except queue.Full:
                self._raise_error()

    def close(self) -> None:
        try:
            if self._thread.is_alive():
                while self._error is None:
                    try:
                        self._queue.put(None, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                self._thread.join()
            self._raise_error()
        finally:
            self.container.close()


class _OpenCvWriter:
    """OpenCV's own FFmpeg writer (VP9, MJPEG, mp4v): a constant frame rate, no timestamps of its own."""

    def __init__(self, path: Path, codec: str, fps: float, size: tuple[int, int]) -> None:
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*OPENCV_FOURCC[codec]), fps, size)
        if not self.writer.isOpened():
            self.writer.release()
            raise OSError(f"OpenCV's writer did not open for {codec}")

    def write(self, bgr: np.ndarray, pts: int) -> None:
        self.writer.write(bgr)

    def close(self) -> None:
        self.writer.release()


# ----------------------------------------------------------------------------------------------- video file
class VideoFileSink(SinkBase):
    """Annotated video that plays anywhere: codec by extension, the source's exact frame rate, renamed into
    place on close().

    ``codec``: h264 (the default for .mp4/.m4v/.mov/.mkv; needs PyAV), vp9 (.webm's default, OpenCV),
    mjpeg (.avi's default, OpenCV) or mp4v (OpenCV; only when asked for: browsers do not play it).
    H.264 frames carry timestamps from the results' media times (a variable-frame-rate file keeps its own
    rhythm) or frame numbers (a live run that dropped frames still plays at real speed); OpenCV's writers
    only know a constant rate.

    Odd sizes are padded by one replicated row/column (``size``) because the encoders need even sizes.
    Frames go to a hidden ``.<name>.partial<ext>`` beside the output; ``close()`` finalises the container
    and renames it, so the output path only ever holds a complete, playable file.
    """

    def __init__(
        self, path: str | Path, fps: float | Fraction, size: tuple[int, int], codec: str | None = None
    ) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in CODECS_BY_EXT:
            raise UserError(
                f"cannot write video '{self.path}': unknown extension '{ext}'; use one of {', '.join(CODECS_BY_EXT)}"
            )
        if codec is not None and codec not in CODECS:
            raise UserError(
                f"cannot write video '{self.path}': codec '{codec}' is unknown; choose one of {', '.join(CODECS)}"
            )
        allowed = CODECS_BY_EXT[ext]
        if codec is not None and codec not in allowed:
            raise UserError(
                f"cannot write {codec} into '{self.path}': a {ext} file takes {', '.join(allowed)}; "
                f"use a {HOME_EXT[codec]} output for {codec}"
            )
        if self.path.is_dir():
            raise UserError(
                f"cannot write video '{self.path}': it is a folder; give a file name such as {self.path / ('out' + ext)}"
            )
        self.codec = codec or allowed[0]
        if not fps > 0:
            raise UserError(f"cannot write video '{self.path}' at {fps} fps; the frame rate must be positive")
        w, h = size
        if w < 1 or h < 1:
            raise UserError(f"cannot write video '{self.path}' of size {w}x{h}; width and height must be positive")
        if self.codec == "h264" and not pyav_available():
            raise UserError(
                f"writing H.264 to '{self.path}' needs PyAV, which is not installed; pip install {PYAV_PIN}, "
                "or write VP9 (codec vp9, a .webm output)"
            )
        ensure_writable_dir(self.path.parent)
        apply_library_logs()
        self.rate = _as_rate(fps)
        self.fps = float(self.rate)
        self.frame_size = (int(w), int(h))
        # Encoders of 4:2:0 video only take even sizes (OpenCV would rescale a 641x359 frame); pad one
        # replicated column/row instead, so every pixel of the frame reaches the file unresampled.
        self.size = (self.frame_size[0] + self.frame_size[0] % 2, self.frame_size[1] + self.frame_size[1] % 2)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{ext}")
        self.frames = 0
        self._warned_resize = False
        self._first_index: int | None = None
        self._first_media: float | None = None
        self.writer_tick = tick(self.rate)
        self._last_pts = -1
        try:
            if self.codec == "h264":
                self.writer: _PyAvWriter | _OpenCvWriter | None = _PyAvWriter(self.tmp, self.rate, self.size)
            else:
                self.writer = _OpenCvWriter(self.tmp, self.codec, self.fps, self.size)
        except Exception as e:  # noqa: BLE001 - any encoder failure is one sentence, with no partial file left
            self.tmp.unlink(missing_ok=True)
            why = getattr(e, "strerror", None) or str(e)
            raise UserError(
                f"cannot write '{self.path}' with codec {self.codec} ({why}); "
                "choose a writable output path, or another codec (h264 .mp4, vp9 .webm, mjpeg .avi)"
            ) from None

    def _pts(self, result: Any) -> int:
        """Ticks since the first frame: by the source file's own times when the results carry them (a
        variable-frame-rate file keeps its rhythm), else by its frame numbers (a live run that dropped frames
        still plays at real speed), else one frame after the last."""
        k = ticks_per_frame(self.rate) if self.codec == "h264" else 1
        media = _media_time(result) if result is not None else None
        index = _frame_index(result) if result is not None else None
        if media is not None and self.codec == "h264":
            if self._first_media is None:
                self._first_media = media
            pts = round((media - self._first_media) / self.writer_tick)
        elif index is not None:
            if self._first_index is None:
                self._first_index = index
            pts = (index - self._first_index) * k
        else:
            pts = self._last_pts + k
        return max(pts, self._last_pts + 1)  # strictly increasing, whatever comes

    def write(self, frame: np.ndarray, result: Any = None) -> None:
        """Append one BGR frame; a frame of another size is resized (OpenCV would silently drop it)."""
        if self.writer is None:
            raise RuntimeError(f"video sink '{self.path}' is closed")
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            if not self._warned_resize:
                log.warning(
                    "%s: frames of %dx%d resized to the video's %dx%d",
                    self.path,
                    frame.shape[1],
                    frame.shape[0],
                    *self.frame_size,
                )
                self._warned_resize = True
            frame = cv2.resize(frame, self.frame_size, interpolation=cv2.INTER_AREA)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if self.size != self.frame_size:
            pad_w, pad_h = self.size[0] - self.frame_size[0], self.size[1] - self.frame_size[1]
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        pts = self._pts(result)
        self.writer.write(np.ascontiguousarray(frame, dtype=np.uint8), pts)
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Finalise the container and rename it into place; a video with no frames is not created."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            writer.close()
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        if self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
            log.warning("no frames were written; %s was not created", self.path)

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
