"""Video files read with PyAV: every frame with its presentation time, and an exact count of what failed.

OpenCV's reader hides what a file holds: it reports a frame count estimated from duration x rate (a
variable-frame-rate file of 68 frames over 29.5 s "has" 444), drops the timestamps unless asked after every
read, and skips undecodable packets inside its own loop. PyAV shows the packets, so:

* every frame carries its presentation time (``Frame.media_time``, seconds from the stream's first frame);
* undecodable frames are the packets that held data but gave no picture, plus the frames a truncated
  file's index promises beyond where its data stops; a variable-frame-rate file decodes with none;
* ``pace=True`` delivers frames at their own times (as a camera would): ``live`` on a file; ``pace_fps``
  delivers them evenly at that rate instead (``--fps``).
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from edge_app.errors import UserError
from edge_app.video.base import Source, trim_heap
from edge_app.video.library_logs import apply_library_logs

log = logging.getLogger("edge_app.video")

MAX_PLAUSIBLE_FPS = 1000.0  # containers sometimes report 90000 (an RTP clock) or 0
# The demuxer reached the end when the last packet ends within this many frame intervals (or of the longest
# gap between packets, for a variable rate) of the stream's duration; earlier means the data stops before the
# index does (a file cut short).
END_SLACK_FRAMES = 2.0


def cannot_read(name: str) -> str:
    """The one sentence for a file that is not a readable video."""
    return (
        f"cannot read video '{name}' (not a video, damaged before its first frame, or a codec this build "
        f"lacks); re-encode it with: ffmpeg -i '{name}' -c:v libx264 -pix_fmt yuv420p fixed.mp4"
    )


class _Opened:
    """One open container: its video stream and a decoder loop that counts packets and pictures."""

    def __init__(self, path: Path) -> None:
        import av

        apply_library_logs()  # PyAV is imported now: set its level too
        self.container = av.open(str(path), "r")
        try:
            self.stream = self.container.streams.video[0]
        except IndexError:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"  # frame and slice threads: decoding keeps pace with the engine
        self.packets = 0  # packets that held data
        self.pictures = 0
        self.last_end: float | None = None  # end time (s) of the last packet demuxed
        self.max_gap = 0.0  # the longest step between packet end times: a variable-rate file's own rhythm
        self.clean_end = False

    def frames(self) -> Iterator[tuple[Any, float]]:
        """(BGR image, media time in seconds) of every picture, in presentation order."""
        import av

        s = self.stream
        start = s.start_time if s.start_time is not None else 0
        try:
            for packet in self.container.demux(s):
                if packet.size:
                    self.packets += 1
                    if packet.pts is not None and packet.time_base is not None:
                        end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                        if self.last_end is not None:
                            self.max_gap = max(self.max_gap, end - self.last_end)
                        self.last_end = end if self.last_end is None else max(self.last_end, end)
                try:
                    pictures = packet.decode()
                except av.error.FFmpegError:
                    continue  # counted at the end: a packet that gave no picture
                for pic in pictures:
                    self.pictures += 1
                    t = float((pic.pts - start) * pic.time_base) if pic.pts is not None else None
                    yield pic.to_ndarray(format="bgr24"), t
            self.clean_end = True
        except av.error.FFmpegError as e:  # the data stops (a cut file): what came is kept
            log.debug("%s: demuxing stopped: %s", self.container.name, e)

    def close(self) -> None:
        self.container.close()


class FileSource(Source):
    """A video file through PyAV: frames in order with their media time; never dropped unless paced.

    ``pace``: deliver each frame at its presentation time, as a camera would (``live`` on a file); the
    source is then live (the loop may drop frames that inference cannot keep up with). ``pace_fps``:
    deliver them evenly at this rate instead (``--fps``). ``loop`` starts again at the end.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        loop: bool = False,
        pace: bool = False,
        pace_fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        flip: str | None = None,
    ) -> None:
        super().__init__(name, width=width, height=height, flip=flip)
        if pace_fps is not None and not pace_fps > 0:
            raise UserError(f"--fps {pace_fps} is not a valid frame rate; pass a positive number such as 30")
        self.path, self.loop, self.pace, self.pace_fps = path, loop, pace, pace_fps
        self.live = pace
        self._open: _Opened | None = None
        self._reading = False
        self._first: tuple[Any, float | None] | None = None
        try:
            self._open = _Opened(path)
            self._it = self._open.frames()
            self._first = next(self._it)
        except Exception:  # noqa: BLE001 - any failure to open or decode a first frame is the one sentence
            if self._open is not None:
                self._open.close()
            raise UserError(cannot_read(name)) from None
        s = self._open.stream
        rate = next(
            (r for r in (s.average_rate, s.guessed_rate, s.base_rate) if r and 0 < r <= MAX_PLAUSIBLE_FPS), None
        )
        self.rate: Fraction | None = Fraction(rate) if rate else None
        if self.rate is None:
            log.warning("%s reports no usable frame rate; assuming 30 fps", name)
        self.fps = float(self.rate) if self.rate else 30.0  # e.g. 29.97002997 for NTSC: exact, never rounded
        self.duration = self._duration()
        self.frame_count = s.frames or (round(self.duration * self.fps) if self.duration else None)
        if self._requested is None:
            img = self._first[0]
            self.size = (img.shape[1], img.shape[0])

    def _duration(self) -> float | None:
        assert self._open is not None  # set in __init__
        s, c = self._open.stream, self._open.container
        if s.duration is not None and s.time_base is not None:
            return float(s.duration * s.time_base)
        return c.duration / 1e6 if c.duration else None

    def _missing(self, o: _Opened) -> int:
        """Frames the file holds that did not come out: packets without a picture, plus a cut file's tail."""
        lost = max(0, o.packets - o.pictures)
        end, dur = o.last_end, self.duration
        slack = max(END_SLACK_FRAMES / self.fps, END_SLACK_FRAMES * o.max_gap)
        if dur and end is not None and end < dur - slack:
            promised = o.stream.frames or round(dur * self.fps)
            lost = max(lost, promised - o.pictures)
        return lost

    def _frames(self) -> Iterator[tuple[Any, ...]]:
        self._reading = True
        try:
            yield from self._read_loop()
        finally:
            if self._open is not None:
                self._open.close()
                self._open = None

    def _read_loop(self) -> Iterator[tuple[Any, ...]]:
        while self._open is not None and not self._stop.is_set():
            o, delivered = self._open, 0
            t0: float | None = None  # wall clock of media time 0 (pace)
            items = self._it
            if self._first is not None:
                first, self._first = self._first, None
                items = _chain(first, items)
            for img, media in items:
                if self._stop.is_set():
                    return
                due = delivered / self.pace_fps if self.pace_fps else media  # when it is due, in seconds
                if self.pace and due is not None:
                    now = time.monotonic()
                    t0 = now - due if t0 is None else t0
                    wait = t0 + due - now
                    if wait > 0 and self._stop.wait(wait):
                        return
                    if wait < -1.0:  # inference fell far behind: restart the clock, no burst
                        t0 = time.monotonic() - due
                delivered += 1
                yield img, time.monotonic(), None, media
            missing = self._missing(o)
            if missing:
                self.decode_errors += missing
                total = delivered + missing
                log.warning(
                    "%s: %d of %d frames could not be decoded (damaged or truncated file)", self.name, missing, total
                )
            if not self.loop or delivered == 0 or self._stop.is_set():
                return
            o.close()
            trim_heap()  # the closed decoder's buffers: see trim_heap
            self._open = _Opened(self.path)  # reopening is reliable where seeking is not
            self._it = self._open.frames()

    def close(self) -> None:
        """Stop iterating; the container closes on the reading thread (PyAV is not thread-safe)."""
        super().close()
        if not self._reading and self._open is not None:  # never iterated: nobody else will close it
            self._open.close()
            self._open = None


def _chain(
    first: tuple[Any, float | None], rest: Iterator[tuple[Any, float | None]]
) -> Iterator[tuple[Any, float | None]]:
    yield first
    yield from rest
