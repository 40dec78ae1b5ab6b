"""A tiled view of many sources: one window or MJPEG stream showing every source in a grid.

DeepStream's tiler: rows = int(sqrt(n)), columns = ceil(n / rows); each tile is its source's latest annotated
frame (with its own HUD, drawn by the loop), letterboxed into the tile. The grid is composed at most once
per frame interval of the fastest source, so n sources do not make the inner sinks n times busier.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Sequence

import cv2
import numpy as np

from edge_app.video.base import Sink, SinkBase


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` tiles: rows = int(sqrt(n)), columns = ceil(n / rows)."""
    if n < 1:
        raise ValueError(f"a grid needs at least one tile, got {n}")
    rows = max(1, int(math.sqrt(n)))
    return rows, math.ceil(n / rows)


def fit_tile(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """``img`` letterboxed into a black ``w`` x ``h`` tile (aspect kept)."""
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    rw, rh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - rh) // 2, (w - rw) // 2
    out[y0 : y0 + rh, x0 : x0 + rw] = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA)
    return out


class GridSink(SinkBase):
    """Composes the latest frame of each of ``n`` sources into one ``size`` (w, h) image for ``inner`` sinks."""

    takes_images = True

    def __init__(self, inner: Sequence[Sink], n: int, size: tuple[int, int] = (1280, 720), fps: float = 30.0) -> None:
        self.inner = list(inner)
        self.n = n
        self.rows, self.cols = grid_shape(n)
        self.size = size
        self.tile = (size[0] // self.cols, size[1] // self.rows)
        self._canvas = np.zeros((size[1], size[0], 3), np.uint8)
        self._interval = 1.0 / fps if fps > 0 else 0.0
        self._last = 0.0
        self._lock = threading.Lock()

    def write(self, frame: np.ndarray, result: Any) -> None:
        """Place ``frame`` in its source's tile; hand the grid to the inner sinks at most once per interval."""
        sid = getattr(result, "source_id", None) or 0
        if not 0 <= sid < self.n:
            raise ValueError(f"source id {sid} is outside a grid of {self.n} sources")
        r, c = divmod(sid, self.cols)
        tw, th = self.tile
        with self._lock:
            self._canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = fit_tile(frame, tw, th)
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
            grid = self._canvas.copy()
        for s in self.inner:
            s.write(grid, result)

    def key_pressed(self) -> int:
        """A key pressed in an inner window."""
        for s in self.inner:
            k = s.key_pressed()
            if k != -1:
                return k
        return -1

    def update_stats(self, stats: dict[str, Any]) -> None:
        """Pass the loop's numbers (per source included) to the inner sinks."""
        for s in self.inner:
            s.update_stats(stats)

    def close(self) -> None:
        """Close the inner sinks."""
        for s in self.inner:
            s.close()
