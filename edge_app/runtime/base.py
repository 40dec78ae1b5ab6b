"""The backend interface: every backend takes the same raw uint8 NHWC BGR batch and returns float32 logits.

Like Polygraphy's runners, the base class guards state and validates input; subclasses implement only
``_infer`` and ``_close``. The frame loop never asks which backend it has.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta


class Engine(abc.ABC):
    """A loaded model. Use as a context manager; ``infer`` is (N,H,W,3) uint8 -> (N,num_classes) float32."""

    backend: str = "base"

    def __init__(self, engine_dir: EngineDir, meta: EngineMeta, precision: str, device: str) -> None:
        self.engine_dir = engine_dir
        self.meta = meta
        self.precision = precision
        self.device = device
        self.model_file = ""  # the file this backend runs, for reports
        self.max_batch: int | None = None  # None: any batch size
        self.last_timings: dict[str, float] = {}  # ms of the last call's internal stages (e.g. h2d/compute/d2h)
        self._closed = False

    @property
    def description(self) -> str:
        """One line naming backend, device, precision and file, e.g. for the HUD and reports."""
        return f"{self.backend} {self.device} {self.precision} ({self.model_file})"

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Run a batch; raises ValueError naming the expected shape when the input does not fit."""
        if self._closed:
            raise RuntimeError(f"{self.backend} engine is closed")
        spec = self.meta.input
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
                or images.shape[1:] != (spec.height, spec.width, 3) or images.shape[0] < 1:
            got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"expected a uint8 batch of shape (N,{spec.height},{spec.width},3), got {got}")
        if self.max_batch is not None and images.shape[0] > self.max_batch:
            raise ValueError(f"batch {images.shape[0]} exceeds this engine's maximum of {self.max_batch}")
        out = self._infer(np.ascontiguousarray(images))
        return np.asarray(out, dtype=np.float32)

    @abc.abstractmethod
    def _infer(self, images: np.ndarray) -> np.ndarray: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass

    def close(self) -> None:
        """Free the backend's resources; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
