"""Frame sources: a generator of (index, capture_time, BGR frame) per source, plus its properties."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_app.errors import UserError


@dataclass
class Frame:
    """One captured frame; ``capture_time`` is ``time.monotonic()`` when it was read."""

    index: int
    capture_time: float
    image: np.ndarray


class VideoFileSource:
    """Frames of a video file, in order, none dropped."""

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"video file '{self.path}' does not exist; pass an existing video file")
        self.cap = cv2.VideoCapture(str(self.path))
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise UserError(f"cannot read video '{self.path}' (not a video, or a codec OpenCV lacks); convert it with ffmpeg to mp4/h264")
        self._first: np.ndarray | None = first
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.size = (first.shape[1], first.shape[0])
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while True:
            if self._first is not None:
                img, self._first = self._first, None
            else:
                ok, img = self.cap.read()
                if not ok:
                    break
            yield Frame(i, time.monotonic(), img)
            i += 1

    def close(self) -> None:
        self.cap.release()


def open_source(uri: str) -> VideoFileSource:
    """Open a source URI. This first version reads video files; live sources come with the threaded loop."""
    return VideoFileSource(uri)
