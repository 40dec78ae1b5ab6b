"""Sinks: context managers that take annotated frames and their results and leave valid output behind.

Every sink has ``write(frame, result)`` and an idempotent ``close()`` that flushes; the pipeline calls
``close()`` on every sink on Ctrl-C too, so an interrupted run leaves a playable video and whole JSON lines.
Sinks: :class:`VideoFileSink`, :class:`JsonlSink`, :class:`DisplaySink` (a window) and
:class:`~edge_app.video.mjpeg.MjpegSink` (the browser view over HTTP).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterable

import cv2
import numpy as np

from edge_app.errors import UserError
from edge_app.fsutil import ensure_writable_dir
from edge_app.video.base import Sink, SinkBase

log = logging.getLogger("edge_app.video")

# Codecs tried in order per extension. mp4v first: pip's opencv-python has no H.264 encoder (avc1 fails
# there with a screen of FFmpeg errors), while OpenCV builds with libx264/openh264 can ask for avc1.
CODECS_BY_EXT: dict[str, tuple[str, ...]] = {
    ".mp4": ("mp4v", "avc1"), ".m4v": ("mp4v", "avc1"), ".mov": ("mp4v", "avc1"),
    ".avi": ("MJPG", "XVID"), ".mkv": ("mp4v", "MJPG", "VP80"), ".webm": ("VP80", "VP90"),
}
FOURCC_BY_EXT = {ext: codecs[0] for ext, codecs in CODECS_BY_EXT.items()}  # the first pipeline's name


def _result_dict(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else result.to_dict()


# ----------------------------------------------------------------------------------------------- video file
class VideoFileSink(SinkBase):
    """Annotated video: codec by extension, the source's exact frame rate, renamed into place on close().

    Odd sizes are padded by one replicated row/column (``size``) because the encoders need even sizes.

    Frames go to a hidden ``.<name>.partial<ext>`` beside the output; ``close()`` finalises the container
    and renames it, so the output path only ever holds a complete, playable file.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], codec: str | None = None) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in CODECS_BY_EXT:
            raise UserError(f"cannot write video '{self.path}': unknown extension '{ext}'; use one of {', '.join(CODECS_BY_EXT)}")
        if not fps > 0:
            raise UserError(f"cannot write video '{self.path}' at {fps} fps; the frame rate must be positive")
        w, h = size
        if w < 1 or h < 1:
            raise UserError(f"cannot write video '{self.path}' of size {w}x{h}; width and height must be positive")
        ensure_writable_dir(self.path.parent)
        self.fps = float(fps)
        self.frame_size = (int(w), int(h))
        # OpenCV's FFmpeg writer only makes even sizes and would rescale a 641x359 frame; pad one replicated
        # column/row instead, so every pixel of the frame reaches the file unresampled.
        self.size = (self.frame_size[0] + self.frame_size[0] % 2, self.frame_size[1] + self.frame_size[1] % 2)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{ext}")
        self.frames = 0
        self._warned_resize = False
        self.codec = ""
        self.writer: cv2.VideoWriter | None = None
        for c in ((codec,) if codec else CODECS_BY_EXT[ext]):
            writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*c), self.fps, self.size)
            if writer.isOpened():
                self.writer, self.codec = writer, c
                break
            writer.release()
        if self.writer is None:
            self.tmp.unlink(missing_ok=True)
            tried = codec or "/".join(CODECS_BY_EXT[ext])
            raise UserError(f"OpenCV cannot write '{self.path}' with codec {tried}; use a .avi (MJPG) or .mp4 (mp4v) output")

    def write(self, frame: np.ndarray, result: Any = None) -> None:
        """Append one BGR frame; a frame of another size is resized (OpenCV would silently drop it)."""
        if self.writer is None:
            raise RuntimeError(f"video sink '{self.path}' is closed")
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            if not self._warned_resize:
                log.warning("%s: frames of %dx%d resized to the video's %dx%d", self.path, frame.shape[1],
                            frame.shape[0], *self.frame_size)
                self._warned_resize = True
            frame = cv2.resize(frame, self.frame_size, interpolation=cv2.INTER_AREA)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if self.size != self.frame_size:
            pad_w, pad_h = self.size[0] - self.frame_size[0], self.size[1] - self.frame_size[1]
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        self.writer.write(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self) -> None:
        """Finalise the container and rename it into place; a video with no frames is not created."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
            log.warning("no frames were written; %s was not created", self.path)

    def __enter__(self) -> "VideoFileSink":
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


def _truncate_torn_tail(path: Path) -> int:
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

    def __init__(self, path: str | Path, append: bool = False, flush_every: int = 16,
                 flush_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        ensure_writable_dir(self.path.parent)
        self.flush_every = max(1, flush_every)
        self.flush_interval_s = flush_interval_s
        self.existing_lines = _truncate_torn_tail(self.path) if append and self.path.is_file() else 0
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

    def __enter__(self) -> "JsonlSink":
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

    def __enter__(self) -> "DisplaySink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- helpers
def open_sinks(*, fps: float, size: tuple[int, int], video: str | Path | None = None,
               jsonl: str | Path | None = None, append: bool = False, display: bool = False,
               serve: str | None = None, title: str = "edge_app", source: Any = None) -> list[Sink]:
    """Open the requested sinks; if one fails, close those already open and re-raise.

    ``source``: when given, the MJPEG view reports its status (e.g. "reconnecting") live.
    """
    from edge_app.video.mjpeg import MjpegSink, parse_serve

    sinks: list[Sink] = []
    try:
        if video:
            sinks.append(VideoFileSink(video, fps, size))
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
