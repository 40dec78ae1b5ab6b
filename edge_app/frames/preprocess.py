"""Host-side tiles: grids of square crops over a frame, each resized to the model input (uint8).

Only geometry happens on the host. Everything numeric (cast, scale, normalise, BGR->RGB, NHWC->NCHW) lives
in :class:`edge_app.models.preprocess.InGraphPreprocess`, traced into every ONNX file.
"""

from __future__ import annotations

import math

import numpy as np

from edge_app.engine_dir import InputSpec
from edge_app.geometry import resize_to_input

# ----------------------------------------------------------------------------------------------- tiles
# Added for tiles mode (issue 5): square tiles, so a tile is never distorted when resized to the square
# model input; the grid covers the whole frame, and the overlap differs by axis where the frame is not square.


def parse_grid(text: str) -> tuple[int, int]:
    """``"3x3"`` -> (columns, rows); raises ValueError naming the bad text and the expected form.

    Only the form is checked here; the range is :class:`~edge_app.frames.modes.tiles.TileConfig`'s to validate.
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"tile grid '{text}' is not COLSxROWS; write it like 3x3") from None
    return cols, rows


def parse_scales(text: str) -> tuple[float, ...]:
    """``"1.0,0.6"`` -> (1.0, 0.6); raises ValueError naming the bad text. The range is TileConfig's to validate."""
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(
            f"tile scales '{text}' are not a comma-separated list of numbers; write them like 1.0,0.6"
        ) from None


def _axis_starts(length: int, side: int, count: int) -> list[int]:
    """``count`` start offsets of tiles of ``side`` px spread evenly over ``length`` px, first at 0, last at the end."""
    if count <= 1 or length <= side:
        return [max(0, (length - side) // 2)]
    step = (length - side) / (count - 1)
    return [round(i * step) for i in range(count)]


def _count_for(length: int, side: int, min_overlap: float) -> int:
    """Fewest tiles of ``side`` px that cover ``length`` px with at least ``min_overlap`` (fraction) overlap."""
    if length <= side:
        return 1
    stride = side * (1.0 - min_overlap)
    return 1 + math.ceil((length - side) / stride - 1e-9)


def tile_boxes(
    size: tuple[int, int], grid: tuple[int, int], scales: tuple[float, ...] = (1.0,), min_overlap: float = 0.25
) -> np.ndarray:
    """Square tiles covering a frame of ``size`` = (width, height): (N,4) int32 x1,y1,x2,y2 (x2, y2 exclusive).

    At scale 1.0 the tile side is the smallest that lets ``grid`` = (cols, rows) tiles cover each axis
    with at least ``min_overlap`` overlap between neighbours (so on 16:9 the columns set the side and the
    rows overlap more). A smaller scale shrinks the side and uses as many tiles per axis as it takes to
    cover the frame with the same minimum overlap. The side never exceeds the frame's short side, so a
    grid that asks for fewer tiles than that along the long axis gets the extra tiles coverage needs.
    """
    w, h = size
    cols, rows = grid
    if w < 1 or h < 1:
        raise ValueError(f"frame size must be positive, got {w}x{h}")
    if cols < 1 or rows < 1:
        raise ValueError(f"tile grid must have at least 1 column and 1 row, got {cols}x{rows}")
    if not 0.0 <= min_overlap < 0.9:
        raise ValueError(f"min_overlap must be in [0, 0.9), got {min_overlap}")
    base = max(w / (cols - (cols - 1) * min_overlap), h / (rows - (rows - 1) * min_overlap))
    out: list[tuple[int, int, int, int]] = []
    for s in scales:
        if not 0.0 < s <= 1.0:
            raise ValueError(f"tile scale must be in (0, 1], got {s}")
        side = max(1, min(w, h, math.ceil(base * s - 1e-6)))
        nx = cols if s == 1.0 and side * cols >= w else _count_for(w, side, min_overlap)
        ny = rows if s == 1.0 and side * rows >= h else _count_for(h, side, min_overlap)
        for y in _axis_starts(h, side, ny):
            for x in _axis_starts(w, side, nx):
                out.append((x, y, x + side, y + side))
    return np.asarray(out, dtype=np.int32).reshape(-1, 4)


def crop_tiles(image: np.ndarray, boxes: np.ndarray, spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Cut ``boxes`` out of ``image`` and resize each to the model input: (N,H,W,3) uint8, one batch."""
    n = len(boxes)
    if out is None:
        out = np.empty((n, spec.height, spec.width, 3), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        out[i] = resize_to_input(image[y1:y2, x1:x2], spec)
    return out
