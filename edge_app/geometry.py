"""Host geometry: resize a frame to the model input (stretch, centre crop, letterbox) and map boxes between
frame pixels and model-input pixels.

Only geometry happens on the host. Everything numeric (cast, scale, normalise, BGR->RGB, NHWC->NCHW) lives
in :class:`edge_app.models.preprocess.InGraphPreprocess`, traced into every ONNX file. Every floor uses these
functions (data readers, training, the frame loop, evaluation), so they sit below all of them.
"""

from __future__ import annotations

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
    out = np.empty((th, tw, 3), dtype=np.uint8)
    out[:] = spec.pad if spec.pad is not None else 114
    y0, x0 = (th - rh) // 2, (tw - rw) // 2
    out[y0 : y0 + rh, x0 : x0 + rw] = r
    return out


def to_batch(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack frames into one contiguous (N,H,W,3) uint8 batch at the model resolution."""
    out = np.empty((len(images), spec.height, spec.width, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = resize_to_input(im, spec)
    return out


def input_transform(frame_hw: tuple[int, int], spec: InputSpec) -> tuple[float, float, float, float]:
    """(scale_x, scale_y, offset_x, offset_y) with ``input = frame * scale + offset``, as resize_to_input does."""
    h, w = frame_hw
    th, tw = spec.height, spec.width
    if (h, w) == (th, tw):
        return 1.0, 1.0, 0.0, 0.0
    if spec.resize == "stretch":
        return tw / w, th / h, 0.0, 0.0
    if spec.resize == "letterbox":
        s = min(th / h, tw / w)
        rh, rw = max(1, round(h * s)), max(1, round(w * s))
        return rw / w, rh / h, float((tw - rw) // 2), float((th - rh) // 2)
    if spec.resize_size:  # center_crop after resizing the short side
        short = spec.resize_size
        rh, rw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        return rw / w, rh / h, -float(int(round((rw - tw) / 2.0))), -float(int(round((rh - th) / 2.0)))
    s = max(th / h, tw / w)
    rh, rw = max(th, round(h * s)), max(tw, round(w * s))
    return rw / w, rh / h, -float((rw - tw) // 2), -float((rh - th) // 2)


def boxes_to_input(boxes: np.ndarray, frame_hw: tuple[int, int], spec: InputSpec) -> np.ndarray:
    """Frame-pixel boxes (M,4) -> model-input pixels (clipped to the input)."""
    sx, sy, ox, oy = input_transform(frame_hw, spec)
    b = np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32) + np.array(
        [ox, oy, ox, oy], np.float32
    )
    return np.clip(b, 0, [spec.width, spec.height, spec.width, spec.height]).astype(np.float32)


def boxes_to_frame(boxes: np.ndarray, frame_hw: tuple[int, int], spec: InputSpec) -> np.ndarray:
    """Model-input boxes (..., 4) (e.g. ``dets[..., :4]``) -> frame pixels, clipped to the frame.

    The inverse of the host resize: what the frame loop applies to a detector's output.
    """
    sx, sy, ox, oy = input_transform(frame_hw, spec)
    b = (np.asarray(boxes, np.float32) - np.array([ox, oy, ox, oy], np.float32)) / np.array(
        [sx, sy, sx, sy], np.float32
    )
    h, w = frame_hw
    return np.clip(b, 0, [w, h, w, h]).astype(np.float32)
