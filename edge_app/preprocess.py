"""Preprocessing: host-side resize to the model resolution, and the in-graph normalisation module.

Only geometry happens on the host (resize / crop / tiles, all uint8). Everything numeric (cast, scale,
normalise, BGR->RGB, NHWC->NCHW) lives in :class:`InGraphPreprocess`, which is traced into every ONNX file
and also wraps the PyTorch model during training, so there is exactly one definition of preprocessing.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from edge_app.engine_dir import InputSpec


class InGraphPreprocess(nn.Module):
    """uint8 (N,H,W,3) BGR -> float (N,3,H,W) RGB normalised, as one scale-and-shift per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # mean/std are in RGB order; forward() flips BGR->RGB before applying them.
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * s)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-m / s).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(self.scale.dtype)
        x = torch.flip(x, dims=[1])  # BGR -> RGB
        return x * self.scale + self.shift


class PreprocessedModel(nn.Module):
    """A classifier that takes raw uint8 NHWC BGR batches: the exact graph that is exported."""

    def __init__(self, model: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.pre = InGraphPreprocess(spec.mean, spec.std)
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.pre(images))


def resize_to_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize one BGR uint8 image to (spec.height, spec.width) following ``spec.resize``."""
    h, w = image.shape[:2]
    th, tw = spec.height, spec.width
    if (h, w) == (th, tw):
        return image
    interp = cv2.INTER_AREA if h * w > th * tw else cv2.INTER_LINEAR
    if spec.resize == "stretch":
        return cv2.resize(image, (tw, th), interpolation=interp)
    if spec.resize == "center_crop":
        s = max(th / h, tw / w)
        rh, rw = max(th, round(h * s)), max(tw, round(w * s))
        r = cv2.resize(image, (rw, rh), interpolation=interp)
        y0, x0 = (rh - th) // 2, (rw - tw) // 2
        return np.ascontiguousarray(r[y0 : y0 + th, x0 : x0 + tw])
    # letterbox
    s = min(th / h, tw / w)
    rh, rw = max(1, round(h * s)), max(1, round(w * s))
    r = cv2.resize(image, (rw, rh), interpolation=interp)
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
