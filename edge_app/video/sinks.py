"""Sinks: context managers that take annotated frames and their results and leave valid output behind.

Every sink has ``write(frame, result)`` and an idempotent ``close()`` that flushes; the pipeline calls
``close()`` on every sink on Ctrl-C too, so an interrupted run leaves a playable video and whole JSON lines.
Sinks: :class:`~edge_app.video.video_file.VideoFileSink`, :class:`~edge_app.video.jsonl.JsonlSink`,
:class:`~edge_app.video.display.DisplaySink` (a window) and :class:`~edge_app.video.mjpeg.MjpegSink` (the
browser view over HTTP). This module opens and closes them together; the names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from edge_app.video.base import Sink
from edge_app.video.display import DisplaySink, display_available
from edge_app.video.jsonl import JsonlSink, read_jsonl, truncate_torn_tail
from edge_app.video.video_file import CODECS, CODECS_BY_EXT, PYAV_PIN, VideoFileSink, pyav_available

__all__ = [
    "CODECS",
    "CODECS_BY_EXT",
    "PYAV_PIN",
    "DisplaySink",
    "JsonlSink",
    "VideoFileSink",
    "close_all",
    "display_available",
    "open_sinks",
    "pyav_available",
    "read_jsonl",
    "truncate_torn_tail",
]


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
