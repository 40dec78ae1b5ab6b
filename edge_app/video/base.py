"""The source and sink contracts every stage of the frame loop relies on.

:class:`Frame` is what a source yields; :class:`Source` is the base of every source (OpenCV captures in
:mod:`edge_app.video.capture`, images and synthetic video in :mod:`edge_app.video.sources`);
:class:`Sink` is the protocol every sink implements in full (optional behaviour has a no-op default in
:class:`SinkBase`), so the pipeline calls methods instead of probing for them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import cv2
import numpy as np

from edge_app.errors import UserError

FLIPS = {"h": 1, "v": 0, "180": -1}  # --flip value -> cv2.flip code


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None on other C libraries: musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the system; True where glibc did it.

    A capture that is released and reopened (an RTSP reconnect, a looped file) frees its FFmpeg decoder's frame
    buffers, but glibc keeps freed memory in its per-thread arenas rather than returning it, and the next
    decoder's threads allocate afresh: measured +13 and +16 MB resident at the two RTSP reconnects of the
    10-minute soak before this trim.
    Trimming after each release returns them (a 720p RTSP capture opened, read and released 10 times: 79-93 MB
    resident without, 65-68 MB with; scripts/soak.py has the whole-loop figures).
    """
    if _malloc_trim is None:
        return False
    _malloc_trim(0)  # 1 when it released memory, 0 when there was none to release
    return True


@dataclass
class Frame:
    """One captured frame; ``capture_time`` is ``time.monotonic()`` right after it was read."""

    index: int
    capture_time: float
    image: np.ndarray  # BGR uint8 (H, W, 3)
    truth: list[dict] | None = None  # ground-truth objects; only the synthetic source knows them
    media_time: float | None = None  # seconds into a file (its presentation time); None for live sources


@dataclass
class ReconnectPolicy:
    """How live sources open and reopen; the defaults suit a USB camera or an RTSP camera on a LAN."""

    open_attempts: int = 3  # tries before the *first* open of a stream gives up with a UserError
    initial_delay_s: float = 0.5  # first backoff: a network blip costs half a second, not eight
    max_delay_s: float = 8.0  # backoff cap, so a camera that comes back is picked up within seconds
    factor: float = 2.0
    open_timeout_s: float = 5.0  # per attempt to open a network stream
    read_timeout_s: float = 3.0  # a stream silent this long counts as cut (FFmpeg may retry it twice)
    give_up_after_s: float | None = None  # None: a live source that drops is retried for as long as the run

    def delays(self) -> Iterator[float]:
        """Exponential backoff delays: initial, initial*factor, ... capped at ``max_delay_s``."""
        d = self.initial_delay_s
        while True:
            yield d
            d = min(d * self.factor, self.max_delay_s)


class Source:
    """Base of every source: the properties the pipeline and the HUD read, flip/resize, and close()."""

    live: bool = False

    def __init__(
        self, name: str, *, width: int | None = None, height: int | None = None, flip: str | None = None
    ) -> None:
        if flip is not None and flip not in FLIPS:
            raise UserError(f"--flip '{flip}' is not supported; use one of {', '.join(FLIPS)}")
        for what, v in (("width", width), ("height", height)):
            if v is not None and v < 1:
                raise UserError(f"--{what} {v} is not a valid size; pass a positive number of pixels")
        if (width is None) != (height is None):
            raise UserError(f"--width {width} and --height {height} must be given together; pass both or neither")
        self.name = name
        self.fps: float = 0.0
        self.size: tuple[int, int] = (width, height) if width and height else (0, 0)
        self.frame_count: int | None = None
        self.status = "ok"  # "ok" or "reconnecting"; read by the HUD from another thread
        self.decode_errors = 0
        self.reconnects = 0
        self._requested = (width, height) if width and height else None
        self._flip = FLIPS[flip] if flip is not None else None
        self._stop = threading.Event()

    # Subclasses yield (BGR image, capture time), (image, time, truth) or (image, time, truth, media time).
    def _frames(self) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def _prepare(self, img: np.ndarray) -> np.ndarray:
        """Colour-convert, resize to the requested size and flip: every frame leaves with ``self.size``."""
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        if img.dtype != np.uint8:  # 16-bit PNG/TIFF: keep the top 8 bits
            img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else np.clip(img, 0, 255).astype(np.uint8)
        w, h = self.size
        if (img.shape[1], img.shape[0]) != (w, h) and w and h:
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if self._flip is not None:
            img = cv2.flip(img, self._flip)
        return img

    def __iter__(self) -> Iterator[Frame]:
        """Frames in order; live sources reconnect inside; ends at end of file or after close()."""
        index = 0
        for item in self._frames():
            if self._stop.is_set():
                break
            truth = item[2] if len(item) > 2 else None
            media = item[3] if len(item) > 3 else None
            yield Frame(index, item[1], self._prepare(item[0]), truth, media)
            index += 1

    def close(self) -> None:
        """Stop iterating and free the device or file; safe to call twice and from another thread."""
        self._stop.set()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "live" if self.live else "file"
        return f"<{type(self).__name__} {self.name!r} {kind} {self.size[0]}x{self.size[1]} @ {self.fps:g} fps>"


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline reads of a source: every :class:`Source` has all of it (and so can a test double)."""

    name: str
    live: bool  # live sources may drop their oldest frames; files never do
    fps: float
    size: tuple[int, int]
    frame_count: int | None  # None: unknown or endless
    status: str  # "ok" or "reconnecting"
    decode_errors: int
    reconnects: int

    def __iter__(self) -> Iterator[Frame]:
        """Frames in order."""

    def close(self) -> None:
        """Stop iterating; safe to call twice and from another thread."""


@runtime_checkable
class Sink(Protocol):
    """What the pipeline needs of a sink; :class:`SinkBase` gives the optional parts a no-op default."""

    #: False for data sinks (JSON lines): they are written after the image sinks, so a line already holds
    #: the frame's end-to-end latency.
    takes_images: bool

    def write(self, frame: np.ndarray, result: Any) -> None:
        """Take one annotated frame and its FrameResult."""

    def close(self) -> None:
        """Flush and release; idempotent."""

    def key_pressed(self) -> int:
        """The last key pressed in a window (-1: none, or no window)."""

    def update_stats(self, stats: dict[str, Any]) -> None:
        """Take the HUD numbers (a browser page shows them)."""

    def attach_source(self, source: Source) -> None:
        """Learn the source (a browser page shows its live status)."""


class SinkBase:
    """Defaults for a sink's optional methods; sinks override what they use."""

    takes_images = True

    def key_pressed(self) -> int:
        """No window: no key."""
        return -1

    def update_stats(self, stats: dict[str, Any]) -> None:
        """Most sinks show no live numbers."""

    def attach_source(self, source: Source) -> None:
        """Most sinks do not care where frames come from."""
