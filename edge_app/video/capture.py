"""OpenCV ``VideoCapture`` sources: video files, cameras, network streams, GStreamer and Jetson CSI cameras.

One class, :class:`CaptureSource`, reads any of them; what differs is how the capture is (re)opened, which
is a small callable per kind. Live captures that stop delivering are reopened with exponential backoff
inside the iterator while ``status == "reconnecting"``; files end cleanly (or restart with ``loop``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2

from edge_app.errors import UserError
from edge_app.video.base import ReconnectPolicy, Source, trim_heap

log = logging.getLogger("edge_app.video")

Opener = Callable[[], cv2.VideoCapture]
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()  # the FFmpeg options travel through a process-wide variable; one open at a time
# OpenCV asks FFmpeg for RTSP over TCP unless told otherwise; some servers (rtsp-server-perl) only do UDP.
RTSP_TRANSPORTS: tuple[str | None, ...] = (None, "rtsp_transport;udp")
MAX_PLAUSIBLE_FPS = 1000.0  # containers and streams sometimes report 90000 (the RTP clock) or 0
# Consecutive failed reads inside a file before we call it the end of what decodes. A damaged run of
# packets costs one failed read per packet (measured: ~20 for 1.5 kB of zeros in an h264 mp4), each ~1 ms.
FILE_RETRY_READS = 300


class CaptureSource(Source):
    """Frames from a ``cv2.VideoCapture`` made by ``opener``; see the module docstring."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        *,
        live: bool,
        cannot_open: str,
        policy: ReconnectPolicy,
        attempts: int = 1,
        fps: float | None = None,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        flip: str | None = None,
        live_if_endless: bool = False,
    ) -> None:
        super().__init__(name, width=width, height=height, flip=flip)
        self.live = live
        self.loop = loop
        self.policy = policy
        self._opener = opener
        self._lock = threading.Lock()  # held around every read, so close() never releases mid-read
        self._cap: cv2.VideoCapture | None = None
        self._first: tuple[Any, ...] | None = None
        for attempt, delay in zip(range(max(1, attempts)), policy.delays()):
            if self._try_open():
                break
            if attempt + 1 < attempts:
                log.warning("cannot open %s (attempt %d of %d); retrying in %.1f s", name, attempt + 1, attempts, delay)
                time.sleep(delay)
        else:
            raise UserError(cannot_open)
        cap = self._cap
        assert cap is not None and self._first is not None  # set by _try_open; not user input
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 and not live else None
        if live_if_endless:  # an http(s) URL may be a live stream or a remote file; the container tells
            self.live = n <= 0
            self.frame_count = n if n > 0 else None
        reported = cap.get(cv2.CAP_PROP_FPS)
        if 0 < reported <= MAX_PLAUSIBLE_FPS:
            self.fps = float(reported)  # e.g. 29.97002997 for NTSC: kept exact, never rounded
        else:
            self.fps = float(fps) if fps else 30.0
            log.warning("%s reports no usable frame rate (%r); assuming %g fps", name, reported, self.fps)
        if self._requested is None:
            img = self._first[0]
            self.size = (img.shape[1], img.shape[0])

    # ------------------------------------------------------------------------------------------- opening
    def _try_open(self) -> bool:
        """Open once and read the first frame (a capture that opens but yields nothing is not open)."""
        cap = self._opener()
        if cap.isOpened():
            ok, img = cap.read()
            if ok and img is not None:
                self._cap, self._first = cap, (img, time.monotonic(), None, self._media_time(cap))
                return True
        cap.release()
        return False

    def _media_time(self, cap: cv2.VideoCapture | None) -> float | None:
        """A file's presentation time of the frame just read (seconds); None for live captures."""
        if self.live or cap is None:
            return None
        return cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

    def _reconnect(self) -> bool:
        """Reopen a live capture with backoff until it delivers, close() is called, or the policy gives up."""
        self.status = "reconnecting"
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
        trim_heap()
        log.warning("%s stopped delivering frames; reconnecting", self.name)
        start = time.monotonic()
        for delay in self.policy.delays():
            if self._stop.is_set():
                return False
            if self._try_open():
                trim_heap()  # what the refused opens allocated
                self.reconnects += 1
                self.status = "ok"
                log.warning("%s is back after %.1f s", self.name, time.monotonic() - start)
                return True
            limit = self.policy.give_up_after_s
            if limit is not None and time.monotonic() - start + delay > limit:
                raise UserError(
                    f"source '{self.name}' did not come back within {limit:g} s; check the camera "
                    "or stream and start again"
                )
            if self._stop.wait(delay):
                return False
        return False  # unreachable: delays() is endless

    # ------------------------------------------------------------------------------------------- reading
    def _frames(self) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self._read_loop()
        finally:
            # A reconnect that finished while close() ran leaves a fresh capture behind: free it here.
            with self._lock:
                if self._cap is not None and self._stop.is_set():
                    self._cap.release()
                    self._cap = None

    def _read_loop(self) -> Iterator[tuple[Any, ...]]:
        delivered = failures = recovered = 0
        while not self._stop.is_set():
            if self._first is not None:
                item, self._first = self._first, None
                delivered += 1
                yield item
                continue
            with self._lock:
                if self._cap is None or self._stop.is_set():
                    break
                ok, img = self._cap.read()
                t = time.monotonic()
            if ok and img is not None:
                delivered += 1
                recovered += failures
                failures = 0
                yield img, t, None, self._media_time(self._cap)
                continue
            if self.live:
                if not self._reconnect():
                    break
                continue
            # A file: a failed read is either the end or a frame that did not decode. Retry a few times
            # while the container says frames remain, so one damaged packet does not end the video.
            failures += 1
            if self.frame_count and delivered < self.frame_count and failures < FILE_RETRY_READS:
                continue
            missing = self.frame_count - delivered if self.frame_count else recovered
            self.decode_errors += max(0, missing, recovered)
            if missing > 0:
                log.warning(
                    "%s: %d of %d frames could not be decoded (damaged or truncated file)",
                    self.name,
                    missing,
                    self.frame_count,
                )
            if not self.loop or delivered == 0 or not self._restart():
                break
            delivered = failures = recovered = 0

    def _restart(self) -> bool:
        """Reopen a file at its first frame (``--loop``); reopening is reliable where seeking is not."""
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
                trim_heap()
            return not self._stop.is_set() and self._try_open()

    def close(self) -> None:
        """Stop iterating and release the capture; a read in progress on another thread finishes first."""
        super().close()
        # A blocked stream read holds the lock for up to the read timeout; then the reader sees _stop.
        if self._lock.acquire(timeout=self.policy.read_timeout_s + 1.0):
            try:
                if self._cap is not None:
                    self._cap.release()
                    self._cap = None
            finally:
                self._lock.release()


VideoFileSource = CaptureSource  # the first pipeline's name for it


# ----------------------------------------------------------------------------------------------- openers
def _ffmpeg_capture(url: str, options: str | None, policy: ReconnectPolicy) -> cv2.VideoCapture:
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(policy.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(policy.read_timeout_s * 1000),
    ]
    with _env_lock:
        old = os.environ.get(FFMPEG_OPTIONS_ENV)
        if options is not None:
            os.environ[FFMPEG_OPTIONS_ENV] = options
        # A refused open is expected while reconnecting: OpenCV's and FFmpeg's lines about it are silenced
        # by apply_library_logs (open_source) unless --verbose asks for them.
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if options is not None:
                if old is None:
                    os.environ.pop(FFMPEG_OPTIONS_ENV, None)
                else:
                    os.environ[FFMPEG_OPTIONS_ENV] = old


class StreamOpener:
    """Opens a network stream; for RTSP tries TCP then UDP and remembers which one worked."""

    def __init__(self, url: str, policy: ReconnectPolicy) -> None:
        self.url = url
        self.policy = policy
        user_set = FFMPEG_OPTIONS_ENV in os.environ  # the user's own FFmpeg options win
        self.options: list[str | None] = (
            list(RTSP_TRANSPORTS) if url.lower().startswith("rtsp") and not user_set else [None]
        )

    def __call__(self) -> cv2.VideoCapture:
        """Try each transport, the last one that worked first."""
        cap = cv2.VideoCapture()
        for opt in list(self.options):
            cap = _ffmpeg_capture(self.url, opt, self.policy)
            if cap.isOpened():
                self.options.remove(opt)
                self.options.insert(0, opt)
                return cap
            cap.release()
        return cap


def open_file(
    name: str,
    path: Path,
    *,
    loop: bool = False,
    width: int | None = None,
    height: int | None = None,
    flip: str | None = None,
) -> CaptureSource:
    """A video file: every frame in order, none dropped; decode failures counted in ``decode_errors``."""
    cannot = (
        f"cannot read video '{name}' (not a video, damaged before its first frame, or a codec this OpenCV "
        f"lacks); re-encode it with: ffmpeg -i '{name}' -c:v libx264 -pix_fmt yuv420p fixed.mp4"
    )
    return CaptureSource(
        name,
        lambda: cv2.VideoCapture(str(path)),
        live=False,
        cannot_open=cannot,
        policy=ReconnectPolicy(),
        loop=loop,
        width=width,
        height=height,
        flip=flip,
    )


def open_camera(
    name: str,
    device: int | str,
    *,
    fps: float | None,
    policy: ReconnectPolicy,
    width: int | None = None,
    height: int | None = None,
    flip: str | None = None,
) -> CaptureSource:
    """A camera by index (``0``) or V4L2 device path; size and frame rate are requested from the driver."""
    linux = sys.platform.startswith("linux")
    if linux and isinstance(device, int) and not Path(f"/dev/video{device}").exists():
        raise UserError(
            f"camera {device} was not found (no /dev/video{device}); list cameras with "
            "'ls /dev/video*', or try --source synthetic"
        )

    def opener() -> cv2.VideoCapture:
        """Open the device and ask it for the requested size and rate."""
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        if cap.isOpened():
            if width and height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latency first: do not queue stale frames in the driver
        return cap

    cannot = (
        f"camera '{name}' exists but cannot be opened or delivers no frames (busy, or not a capture "
        "device); close other programs using it or pick another with 'ls /dev/video*'"
    )
    return CaptureSource(
        name, opener, live=True, cannot_open=cannot, policy=policy, fps=fps, width=width, height=height, flip=flip
    )


def open_stream(
    url: str,
    *,
    fps: float | None,
    policy: ReconnectPolicy,
    width: int | None = None,
    height: int | None = None,
    flip: str | None = None,
) -> CaptureSource:
    """An ``rtsp://`` / ``rtmp://`` / ``http(s)://`` stream through FFmpeg, retried per ``policy``."""
    cannot = (
        f"cannot open stream '{url}' after {policy.open_attempts} tries; check the URL and that the camera "
        "or server is running and reachable"
    )
    http = url.lower().startswith("http")
    return CaptureSource(
        url,
        StreamOpener(url, policy),
        live=True,
        cannot_open=cannot,
        policy=policy,
        attempts=policy.open_attempts,
        fps=fps,
        width=width,
        height=height,
        flip=flip,
        live_if_endless=http,
    )
