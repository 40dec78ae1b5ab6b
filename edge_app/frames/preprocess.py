"""Host-side preprocessing: resize / crop / tiles to the model resolution, all uint8.

Only geometry happens on the host. Everything numeric (cast, scale, normalise, BGR->RGB, NHWC->NCHW) lives
in :class:`edge_app.models.preprocess.InGraphPreprocess`, traced into every ONNX file.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_app.engine_dir import InputSpec


def _largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest k <= ``limit`` that divides ``n`` (1 when ``limit`` < 2)."""
    for k in range(max(1, limit), 1, -1):
        if n % k == 0:
            return k
    return 1


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average ``image`` down to ``size`` = (width, height), in two cheap steps when it shrinks a lot.

    OpenCV's INTER_AREA has a fast path for whole-number factors only; 1280x720 -> 64x64 (factors 20 and
    11.25) takes the general path at ~2.5-4 ms. So the image is first averaged over kx x ky blocks, the
    largest whole factors that divide its sides and stay within the total factor (1280x720 -> 64x72), and
    that small image is area-resized to ``size``. Both steps are box filters, so the result is the same kind
    of antialiased average with a slightly wider kernel (mean |difference| to one INTER_AREA: 0.6 grey
    levels on 720p video frames, 1.2 on 25 real photographs), at 1/3 to 2/3 of the cost. Enlarging, or
    shrinking by less than 2x, is one INTER_AREA/INTER_LINEAR resize.
    """
    h, w = image.shape[:2]
    tw, th = size
    if tw > w or th > h or w * h <= tw * th:
        return cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR if w * h <= tw * th else cv2.INTER_AREA)
    kx, ky = _largest_divisor_at_most(w, w // tw), _largest_divisor_at_most(h, h // th)
    if kx > 1 or ky > 1:
        image = cv2.resize(image, (w // kx, h // ky), interpolation=cv2.INTER_AREA)  # whole factors: fast path
        if image.shape[1] == tw and image.shape[0] == th:
            return image
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)


def resize_to_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize one BGR uint8 image to (spec.height, spec.width) following ``spec.resize`` (area average when
    shrinking, see :func:`shrink`; bilinear when enlarging; torchvision's Resize+CenterCrop geometry with one
    exact INTER_AREA when ``spec.resize_size`` is set)."""
    h, w = image.shape[:2]
    th, tw = spec.height, spec.width
    if (h, w) == (th, tw):
        return image
    if spec.resize == "stretch":
        return shrink(image, (tw, th))
    if spec.resize == "center_crop":
        if spec.resize_size:
            # torchvision's Resize(int): the shorter side becomes resize_size, the longer one is truncated;
            # CenterCrop rounds its offsets. INTER_AREA when shrinking is the antialiased box filter.
            # One exact INTER_AREA here, not the two-step shrink: this is the path torchvision's weights run
            # on, and the agreement figures in README were measured with it.
            short = spec.resize_size
            rh, rw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
            interp = cv2.INTER_AREA if rh * rw < h * w else cv2.INTER_LINEAR
            r = cv2.resize(image, (rw, rh), interpolation=interp)
            y0, x0 = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))
            return np.ascontiguousarray(r[y0 : y0 + th, x0 : x0 + tw])
        s = max(th / h, tw / w)
        rh, rw = max(th, round(h * s)), max(tw, round(w * s))
        r = shrink(image, (rw, rh))
        y0, x0 = (rh - th) // 2, (rw - tw) // 2
        return np.ascontiguousarray(r[y0 : y0 + th, x0 : x0 + tw])
    # letterbox
    s = min(th / h, tw / w)
    rh, rw = max(1, round(h * s)), max(1, round(w * s))
    r = shrink(image, (rw, rh))
    out = np.full((th, tw, 3), 114, dtype=np.uint8)
    y0, x0 = (th - rh) // 2, (tw - rw) // 2
    out[y0 : y0 + rh, x0 : x0 + rw] = r
    return out


def to_batch(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack frames into one contiguous (N,H,W,3) uint8 batch at the model resolution."""
    out = np.empty((len(images), spec.height, spec.width, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = resize_to_input(im, spec)
    return out


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
