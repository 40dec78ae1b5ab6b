"""Frame sources: ``open_source(uri)`` turns one ``--source`` string into an iterable of :class:`Frame`.

Accepted URIs: a camera index (``0``), a V4L2 device (``/dev/video0``), a video file, ``rtsp://`` and
``http(s)://`` streams, ``gst:<pipeline>`` (OpenCV built with GStreamer), ``csi://N`` (Jetson CSI camera),
a folder or glob of images, and ``synthetic`` (the moving-shapes video rendered live). Cameras, streams and
``synthetic`` are *live* (the pipeline may drop their oldest frames); files and images are not (it never
drops). OpenCV-backed sources (files, cameras, streams, GStreamer) live in :mod:`edge_app.video.capture`.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qsl

from edge_app.data.folder import IMAGE_EXTS, read_image
from edge_app.errors import UserError
from edge_app.video import capture, gstreamer
from edge_app.video.base import FLIPS, Frame, ReconnectPolicy, Source
from edge_app.video.library_logs import apply_library_logs

log = logging.getLogger("edge_app.video")

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
DEFAULT_IMAGE_FPS = 30.0  # images have no frame rate; this is what a video written from them plays at


# ----------------------------------------------------------------------------------------------- images
class ImageSource(Source):
    """A sorted list of image files, one frame each; unreadable files are counted and skipped."""

    live = False

    def __init__(
        self,
        name: str,
        paths: list[Path],
        *,
        fps: float | None = None,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        flip: str | None = None,
    ) -> None:
        super().__init__(name, width=width, height=height, flip=flip)
        self.paths = paths
        self.loop = loop
        self.fps = float(fps) if fps else DEFAULT_IMAGE_FPS
        self.frame_count = len(paths)
        if self._requested is None:
            # Every frame must share one size (video sinks need it): the first readable image sets it.
            first = next((img for img in (read_image(p) for p in paths[:50]) if img is not None), None)
            if first is None:
                raise UserError(
                    f"none of the first images of '{name}' can be read; check that they are valid image files"
                )
            self.size = (first.shape[1], first.shape[0])

    def _frames(self) -> Iterator[tuple[Any, ...]]:
        while not self._stop.is_set():
            for p in self.paths:
                if self._stop.is_set():
                    return
                img = read_image(p)
                t = time.monotonic()
                if img is None:
                    self.decode_errors += 1
                    log.warning("skipping unreadable image %s", p)
                    continue
                yield img, t
            if not self.loop:
                return


# ----------------------------------------------------------------------------------------------- synthetic
SYNTHETIC_KEYS = {"frames": int, "seed": int, "objects": int, "replay": int}


class SyntheticSource(Source):
    """The built-in moving-shapes video rendered live at its frame rate; endless unless ``frames`` > 0."""

    live = True

    def __init__(
        self,
        name: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        frames: int = 0,
        seed: int = 1,
        objects: int = 4,
        replay: int = 0,
        loop: bool = False,
        flip: str | None = None,
    ) -> None:
        from edge_app.data.synthetic import VideoConfig

        super().__init__(name, width=width, height=height, flip=flip)
        d = VideoConfig()
        w, h = (width, height) if width and height else (d.width, d.height)
        k = h / d.height  # objects keep their size relative to the frame, as tiles expect
        self.cfg = VideoConfig(
            width=w,
            height=h,
            fps=float(fps or d.fps),
            frames=max(0, frames),
            objects=objects,
            min_size=d.min_size * k,
            max_size=d.max_size * k,
            seed=seed,
        )
        self.loop = loop
        # replay=N: render the first N frames once, then deliver them in turn at the frame rate (each as a fresh
        # copy, as a camera's buffer is). Rendering 720p costs ~25 % of a core per source on a 2-core EPYC
        # (more than the detector's whole loop), so `bench --pipeline 'synthetic?replay=30' --streams` measures
        # the loop, not the renderer; a real camera's cost is its decode instead.
        self.replay = replay
        self._replayed: list[tuple[Any, Any]] = []  # the frames replay plays, rendered on first use
        self.fps = self.cfg.fps
        self.size = (w, h)
        self.frame_count = self.cfg.frames or None

    def _scene(self) -> Iterable[tuple[Any, Any]]:
        """One pass of the video: rendered as it plays, or (``replay``) from the frames rendered once."""
        from edge_app.data.synthetic import SyntheticScene

        if not self.replay:
            return SyntheticScene(self.cfg)
        if not self._replayed:
            self._replayed = list(itertools.islice(SyntheticScene(self.cfg), self.replay))
        rounds = itertools.count() if not self.cfg.frames else range(-(-self.cfg.frames // len(self._replayed)))
        frames = ((img.copy(), truth) for _ in rounds for img, truth in self._replayed)
        return itertools.islice(frames, self.cfg.frames or None)

    def _frames(self) -> Iterator[tuple[Any, ...]]:
        period = 1.0 / self.fps
        while not self._stop.is_set():
            scene = self._scene()
            t0 = time.monotonic()
            for i, (img, truth) in enumerate(scene):
                # Paced like a camera: a frame is "captured" at t0 + i/fps, not as fast as we can render.
                wait = t0 + i * period - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                if wait < -1.0:  # rendering fell far behind (slow machine): restart the clock, no burst
                    t0 = time.monotonic() - i * period
                yield img, time.monotonic(), truth
                if self._stop.is_set():
                    return
            if not (self.loop and self.cfg.frames):
                return


# ----------------------------------------------------------------------------------------------- open_source
def _open_video_file(uri: str, p: Path, *, fps: float | None, loop: bool, pace: bool, **common: Any) -> Source:
    """PyAV (timestamps, exact decode failures) when installed, else OpenCV's reader."""
    if fps is not None and not pace:
        log.warning(
            "--fps %g ignored for video file %s: files keep their real frame rate when read as fast as possible",
            fps,
            uri,
        )
    if importlib.util.find_spec("av") is None:
        src: Source = capture.open_file(uri, p, loop=loop, **common)
        if pace:
            log.warning("%s: pacing a file needs PyAV (pip install av); reading it as fast as possible", uri)
        return src
    from edge_app.video.file_source import FileSource

    return FileSource(uri, p, loop=loop, pace=pace, pace_fps=fps if pace else None, **common)


def _image_paths(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_EXTS and Path(p).is_file())


def _parse_synthetic(uri: str) -> dict[str, int]:
    """``synthetic`` or ``synthetic?frames=300&seed=2&objects=3``."""
    rest = uri[len("synthetic") :]
    if rest and not rest.startswith("?"):
        raise UserError(f"source '{uri}' is not understood; use 'synthetic' or 'synthetic?frames=300&seed=1'")
    opts: dict[str, int] = {}
    for k, v in parse_qsl(rest[1:], keep_blank_values=True):
        if k not in SYNTHETIC_KEYS:
            raise UserError(f"synthetic option '{k}' is unknown; use {', '.join(SYNTHETIC_KEYS)}")
        try:
            opts[k] = SYNTHETIC_KEYS[k](v)
        except ValueError:
            raise UserError(f"synthetic option {k}='{v}' is not a whole number; pass e.g. {k}=3") from None
        if opts[k] < 0 or (k == "objects" and opts[k] < 1):
            raise UserError(f"synthetic option {k}={v} is out of range; pass a positive number")
    return opts


def open_source(
    uri: str,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    loop: bool = False,
    flip: str | None = None,
    reconnect: ReconnectPolicy | None = None,
    pace: bool = False,
) -> Source:
    """Open any ``--source`` string; raise :class:`UserError` with one sentence when it cannot be opened.

    ``width``/``height``: cameras are asked for that size, and every source's frames come out at it.
    ``fps``: the rate asked of cameras, the pace of ``synthetic`` and the rate of image sequences; streams
    keep their real rate. ``pace``: a video file delivers its frames at their own times, as a camera would
    (``live``), at ``fps`` when given; without it a file is read as fast as it decodes (``annotate``).
    ``loop`` restarts files, images and finite synthetic videos at the end.
    ``flip``: ``h``, ``v`` or ``180``. ``reconnect``: backoff settings for live sources.
    """
    if fps is not None and not fps > 0:
        raise UserError(f"--fps {fps} is not a valid frame rate; pass a positive number such as 30")
    apply_library_logs()  # FFmpeg's own lines would bury our one sentence (--verbose shows them)
    uri = str(uri).strip()
    policy = reconnect or ReconnectPolicy()
    common: dict[str, Any] = {"width": width, "height": height, "flip": flip}
    if uri == "synthetic" or uri.startswith("synthetic?"):
        return SyntheticSource(uri, fps=fps, loop=loop, **_parse_synthetic(uri), **common)
    if uri.startswith("gst:"):
        return gstreamer.open_gstreamer(uri, uri[4:].strip(), fps=fps, policy=policy, **common)
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", uri)
    if m:
        scheme = m.group(1).lower()
        if scheme == "csi":
            return gstreamer.open_csi(uri, m.group(2), fps=fps, policy=policy, **common)
        if scheme in STREAM_SCHEMES:
            return capture.open_stream(uri, fps=fps, policy=policy, **common)
        if scheme == "file":
            uri = m.group(2)
        else:
            raise UserError(
                f"source scheme '{scheme}://' is not supported; use a file, a camera index, "
                f"{', '.join(s + '://' for s in STREAM_SCHEMES)}, gst:, csi://N or synthetic"
            )
    if re.fullmatch(r"\d+", uri):
        return capture.open_camera(uri, int(uri), fps=fps, policy=policy, **common)
    p = Path(uri).expanduser()
    if uri.startswith("/dev/video"):
        if not p.exists():
            raise UserError(f"camera device '{uri}' does not exist; list cameras with 'ls /dev/video*'")
        return capture.open_camera(uri, str(p), fps=fps, policy=policy, **common)
    if p.is_dir():
        paths = _image_paths(str(p / "*"))
        if not paths:
            raise UserError(
                f"folder '{uri}' holds no images ({', '.join(sorted(IMAGE_EXTS)[:3])}, ...); pass a folder of images or a video file"
            )
        return ImageSource(uri, paths, fps=fps, loop=loop, **common)
    if p.is_file():
        if p.suffix.lower() in IMAGE_EXTS:
            return ImageSource(uri, [p], fps=fps, loop=loop, **common)
        return _open_video_file(uri, p, fps=fps, loop=loop, pace=pace, **common)
    if any(c in uri for c in "*?["):
        paths = _image_paths(uri)
        if not paths:
            raise UserError(
                f"pattern '{uri}' matches no images; check the pattern (quote it so the shell does not expand it)"
            )
        return ImageSource(uri, paths, fps=fps, loop=loop, **common)
    raise UserError(
        f"source '{uri}' was not found; pass an existing video file, image folder or glob, a camera "
        "index such as 0, /dev/videoN, rtsp:// or http(s):// URL, gst:<pipeline>, csi://N or synthetic"
    )


__all__ = ["Frame", "ReconnectPolicy", "Source", "ImageSource", "SyntheticSource", "open_source", "FLIPS", "IMAGE_EXTS"]
