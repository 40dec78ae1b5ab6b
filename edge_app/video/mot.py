"""MOTChallenge text output: one row per tracked box, the format TrackEval and ``trackers eval`` read.

Row: ``frame,id,left,top,width,height,conf,-1,-1,-1`` with frames counted from 1 (a result's ``index`` 0 is
frame 1) and boxes in frame pixels. Only labels with a track ID are written: an untracked box is no
trajectory. One file holds one sequence, so a sink refuses results of a second source.

This module sits below the frame loop: it reads results by their fields (``index``, ``source_id``,
``labels`` with ``track_id``/``box``/``score``) or their JSON-line dicts, never importing ``frames``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from edge_app.errors import UserError
from edge_app.video.base import SinkBase


def _labels(result: Any) -> tuple[int, int | None, list[tuple[int, tuple[float, ...], float]]]:
    """(frame index, source id, [(track id, box, score)]) of a FrameResult or its JSON-line dict."""
    if isinstance(result, dict):
        rows = [
            (int(lb["track_id"]), tuple(lb["box"]), float(lb["score"]))
            for lb in result["labels"]
            if lb.get("track_id") is not None and lb.get("box")
        ]
        return int(result["frame"]), result.get("source_id"), rows
    rows = [(lb.track_id, tuple(lb.box), lb.score) for lb in result.labels if lb.track_id is not None and lb.box]
    return int(result.index), result.source_id, rows


def mot_rows(frame_index: int, tracks: Iterable[tuple[int, tuple[float, ...], float]]) -> list[str]:
    """MOT rows of one frame (0-based ``frame_index``) from (track id, x1,y1,x2,y2, score) triples."""
    out = []
    for tid, (x1, y1, x2, y2), score in tracks:
        out.append(f"{frame_index + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.5f},-1,-1,-1")
    return out


def check_mot_path(path: str | os.PathLike) -> Path:
    """``path`` if its folder exists; a one-sentence UserError otherwise (we do not guess where it should go)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(
            f"MOT output folder '{p.parent}' does not exist; create it or choose a path in an existing folder"
        )
    if p.is_dir():
        raise UserError(f"MOT output '{p}' is a folder; give a file path such as '{p / 'tracks.txt'}'")
    return p


class MotSink(SinkBase):
    """Writes MOTChallenge rows per result; a data sink (no images). Use with ``with`` or call ``close``."""

    takes_images = False

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = check_mot_path(path)
        try:
            self.f: IO[str] | None = open(self.path, "w", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write '{self.path}' ({e.strerror}); choose a writable MOT output path") from None
        self.rows = 0
        self._source: int | None | str = "unset"

    def write(self, frame: np.ndarray | None, result: Any) -> None:
        """Append the tracked boxes of ``result`` (a FrameResult or its dict); whole lines only."""
        if self.f is None:
            raise RuntimeError(f"MOT sink '{self.path}' is closed")
        index, source, tracks = _labels(result)
        if self._source == "unset":
            self._source = source
        elif source != self._source:
            raise UserError(
                f"MOT file '{self.path}' holds one sequence but results come from sources {self._source} and "
                f"{source}; write one MOT file per source"
            )
        rows = mot_rows(index, tracks)
        if rows:
            self.f.write("\n".join(rows) + "\n")
            self.rows += len(rows)

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self.f is not None:
            self.f.close()
            self.f = None

    def __enter__(self) -> MotSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_mot(path: str | os.PathLike, results: Iterable[Any]) -> Path:
    """Write the MOT file of ``results`` (FrameResults or dicts of one source) at ``path``."""
    with MotSink(path) as sink:
        for r in results:
            sink.write(None, r)
    return Path(path)
