"""Sinks: context managers that take annotated frames and their results and leave valid output behind.

Every sink has ``write(frame, result)`` and an idempotent ``close()`` that flushes; the pipeline calls
``close()`` on every sink on Ctrl-C too, so an interrupted run leaves a playable video and whole JSON lines.
Sinks: :class:`VideoFileSink`, :class:`JsonlSink`, :class:`DisplaySink` (a window) and
:class:`~edge_app.video.mjpeg.MjpegSink` (the browser view over HTTP).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterable

import cv2
import numpy as np

from edge_app.errors import UserError
from edge_app.fsutil import ensure_writable_dir
from edge_app.video.base import Sink, SinkBase

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


def _result_dict(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else result.to_dict()


def _frame_index(result: Any) -> int | None:
    """The source's frame number of ``result`` (a FrameResult or its dict), or None when there is none."""
    index = result.get("frame") if isinstance(result, dict) else getattr(result, "index", None)
    return index if isinstance(index, int) else None


def pyav_available() -> bool:
    """Whether PyAV (H.264 writing) is installed; checked without importing it."""
    return importlib.util.find_spec("av") is not None


def _as_rate(fps: float | Fraction) -> Fraction:
    """The frame rate as a fraction: NTSC's 29.97 float becomes exactly 30000/1001."""
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


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
            # Frames count in ticks of one frame at the source's exact rate. Kept here: the muxer replaces the
            # stream's time base with its own (1/30000 for NTSC) once it writes the header.
            self.time_base = 1 / rate
            self.stream.time_base = self.time_base
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
    H.264 frames carry timestamps from the results' frame numbers, so a live run that dropped frames
    still plays at real speed; OpenCV's writers only know a constant rate.

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
        """Frames since the first one, by the source's frame numbers when the results carry them."""
        index = _frame_index(result) if result is not None else None
        if index is None:
            return self._last_pts + 1
        if self._first_index is None:
            self._first_index = index
        return max(index - self._first_index, self._last_pts + 1)  # strictly increasing, whatever comes

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


# ----------------------------------------------------------------------------------------------- JSON lines
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file (a torn last line from a killed run is ignored)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def truncate_torn_tail(path: Path) -> int:
    """Cut a JSON-lines file after its last complete line; return the number of complete lines kept."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return data[:keep].count(b"\n")


class JsonlSink(SinkBase):
    """One JSON object per frame (``FrameResult.to_dict()``), written in whole lines and flushed per batch.

    Lines are buffered and written together every ``flush_every`` frames or ``flush_interval_s`` seconds,
    whichever comes first, so the file only ever grows by complete lines. ``append=True`` continues an
    existing file (``--resume``) after dropping a torn last line; ``existing_lines`` says how many it kept.
    """

    takes_images = False  # a data sink: written after the image sinks, so each line holds end-to-end latency

    def __init__(
        self, path: str | Path, append: bool = False, flush_every: int = 16, flush_interval_s: float = 1.0
    ) -> None:
        self.path = Path(path)
        ensure_writable_dir(self.path.parent)
        self.flush_every = max(1, flush_every)
        self.flush_interval_s = flush_interval_s
        self.existing_lines = truncate_torn_tail(self.path) if append and self.path.is_file() else 0
        try:
            self.f: IO[str] | None = open(self.path, "a" if append else "w", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write '{self.path}' ({e.strerror}); choose a writable output path") from None
        self.frames = 0
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def write(self, frame: np.ndarray | None, result: Any) -> None:
        """Queue the line for ``result`` (a FrameResult or a dict); flush when the batch is full or old."""
        if self.f is None:
            raise RuntimeError(f"JSON-lines sink '{self.path}' is closed")
        self._pending.append(json.dumps(_result_dict(result)) + "\n")
        self.frames += 1
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the queued lines in one call and hand them to the OS."""
        if self.f is not None and self._pending:
            # Taken off the queue first: a Ctrl-C between write and clear must not write lines twice.
            data = "".join(self._pending)
            self._pending.clear()
            self.f.write(data)
            self.f.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self.f is not None:
            self.flush()
            self.f.close()
            self.f = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- window
@lru_cache(maxsize=1)
def display_available() -> tuple[bool, str]:
    """(True, "") when an OpenCV window can open here, else (False, why). Checked once per process."""
    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if gui is None or gui.group(1).upper() == "NONE":
        return False, "this OpenCV build has no GUI support (opencv-python-headless?)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no DISPLAY or WAYLAND_DISPLAY is set (a headless machine, or SSH without -X)"
    # A DISPLAY that points nowhere makes OpenCV's Qt abort the whole process; probe in a child instead.
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"opening a test window failed ({e})"
    if r.returncode != 0:
        tail = (r.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return False, f"opening a test window failed ({tail})"
    return True, ""


class DisplaySink(SinkBase):
    """An OpenCV window; skipped with one message when there is no display. Reports keys via key_pressed()."""

    def __init__(self, title: str = "edge_app") -> None:
        self.title = title
        self.enabled, self.reason = display_available()
        self._key: int | None = None
        self._shown = False
        if not self.enabled:
            log.warning("display: no window: %s; watch in a browser with --serve 127.0.0.1:8080 instead", self.reason)

    def write(self, frame: np.ndarray, result: Any = None) -> None:
        """Show the frame and poll the keyboard (HighGUI only draws while it is polled)."""
        if not self.enabled:
            return
        cv2.imshow(self.title, frame)
        k = cv2.waitKey(1)
        if k != -1:
            self._key = k & 0xFF
        elif self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._key = 27  # the user closed the window: same as Esc
        self._shown = True

    def key_pressed(self) -> int:
        """The last key pressed since the previous call (27 = Esc, also when the window was closed; -1: none)."""
        k, self._key = self._key, None
        return -1 if k is None else k

    def close(self) -> None:
        """Close the window; safe to call twice."""
        if self.enabled and self._shown:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        self._shown = False

    def __enter__(self) -> DisplaySink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- helpers
def open_sinks(
    *,
    fps: float,
    size: tuple[int, int],
    video: str | Path | None = None,
    jsonl: str | Path | None = None,
    append: bool = False,
    display: bool = False,
    serve: str | None = None,
    title: str = "edge_app",
    source: Any = None,
    codec: str | None = None,
) -> list[Sink]:
    """Open the requested sinks; if one fails, close those already open and re-raise.

    ``source``: when given, the MJPEG view reports its status (e.g. "reconnecting") live.
    ``codec``: the video file's codec (None: the extension's default, see :class:`VideoFileSink`).
    """
    from edge_app.video.mjpeg import MjpegSink, parse_serve

    sinks: list[Sink] = []
    try:
        if video:
            sinks.append(VideoFileSink(video, fps, size, codec))
        if jsonl:
            sinks.append(JsonlSink(jsonl, append=append))
        if display:
            sinks.append(DisplaySink(title))
        if serve:
            host, port = parse_serve(serve)
            sinks.append(MjpegSink(host, port, title=title))
            if source is not None:
                sinks[-1].attach_source(source)
    except BaseException:
        close_all(sinks)
        raise
    return sinks


def close_all(sinks: Iterable[Any]) -> None:
    """Close every sink even if one fails; re-raise the first failure afterwards."""
    first: BaseException | None = None
    for s in sinks:
        try:
            s.close()
        except BaseException as e:  # noqa: BLE001 - the others must still be closed
            first = first or e
    if first is not None:
        raise first
