"""Sinks: context managers that take annotated frames and results and flush them safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edge_app.errors import UserError
from edge_app.fsutil import ensure_writable_dir
from edge_app.postprocess import FrameResult

FOURCC_BY_EXT = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class VideoFileSink:
    """Annotated video; codec by extension; written under a temp name and renamed when closed cleanly."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in FOURCC_BY_EXT:
            raise UserError(f"cannot write video '{self.path}': unknown extension '{ext}'; use one of {', '.join(FOURCC_BY_EXT)}")
        ensure_writable_dir(self.path.parent)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{ext}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC_BY_EXT[ext]), fps, size)
        if not self.writer.isOpened():
            raise UserError(f"OpenCV cannot open '{self.path}' for writing with codec {FOURCC_BY_EXT[ext]}; try a .avi output")
        self.frames = 0

    def write(self, frame: np.ndarray, result: FrameResult | None = None) -> None:
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None  # type: ignore[assignment]
            self.tmp.replace(self.path)

    def __enter__(self) -> "VideoFileSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class JsonlSink:
    """One JSON object per frame, flushed as it goes, so an interrupted run keeps every finished line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        ensure_writable_dir(self.path.parent)
        self.f: IO[str] | None = open(self.path, "w", encoding="utf-8")
        self.frames = 0

    def write(self, frame: np.ndarray | None, result: FrameResult) -> None:
        assert self.f is not None
        self.f.write(json.dumps(result.to_dict()) + "\n")
        self.frames += 1
        if self.frames % 16 == 0:
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
