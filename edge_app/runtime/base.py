"""The backend interface: every backend takes the same raw uint8 NHWC BGR batch and returns its outputs by name.

Like Polygraphy's runners, the base class guards state and validates input; subclasses implement only
``_infer`` and ``_close``. Outputs come back as ``{name: float32 array}`` in the order of ``meta.outputs``
(a classifier's ``logits``, a detector's ``dets``), so every model kind goes through the same door. The
frame loop never asks which backend it has.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of one model input or output; ``None`` marks the dynamic batch dimension."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


class Engine(abc.ABC):
    """A loaded model. Use as a context manager; ``infer`` is (N,H,W,3) uint8 -> {output name: float32 array}."""

    backend: str = "base"
    #: Why ``open_engine`` picked this backend and precision (and what it passed over), for the user.
    choice: str = ""
    #: True when the engine compiles differently for ``use='latency'`` and ``'throughput'`` (OpenVINO's
    #: hints), so a benchmark of batch 1 and of larger batches opens it once for each.
    use_sensitive: bool = False

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
    def inputs(self) -> list[TensorInfo]:
        """The one input: raw uint8 NHWC BGR frames at the model resolution, any batch size."""
        spec = self.meta.input
        return [TensorInfo("images", "uint8", (None, spec.height, spec.width, 3))]

    @property
    def outputs(self) -> list[str]:
        """Output names in the order ``infer`` returns them (from meta.json)."""
        return list(self.meta.outputs)

    @property
    def description(self) -> str:
        """One line naming backend, device, precision and file, e.g. for the HUD and reports."""
        return f"{self.backend} {self.device} {self.precision} ({self.model_file})"

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch; ``{output name: float32 array}`` with the batch first.

        Raises ValueError naming the expected shape when the input does not fit.
        """
        if self._closed:
            raise RuntimeError(f"{self.backend} engine is closed")
        spec = self.meta.input
        if (
            not isinstance(images, np.ndarray)
            or images.dtype != np.uint8
            or images.ndim != 4
            or images.shape[1:] != (spec.height, spec.width, 3)
            or images.shape[0] < 1
        ):
            got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"expected a uint8 batch of shape (N,{spec.height},{spec.width},3), got {got}")
        if self.max_batch is not None and images.shape[0] > self.max_batch:
            raise ValueError(f"batch {images.shape[0]} exceeds this engine's maximum of {self.max_batch}")
        out = self._infer(np.ascontiguousarray(images))
        missing = [n for n in self.outputs if n not in out]
        if missing:
            raise RuntimeError(
                f"{self.backend} returned outputs {sorted(out)}, but meta.json lists {self.outputs}; "
                "re-export the engine folder"
            )
        return {n: np.asarray(out[n], dtype=np.float32) for n in self.outputs}

    def infer_batched(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``infer`` in chunks of at most ``max_batch`` (one call when the engine takes any batch size)."""
        cap = self.max_batch
        if not cap or len(images) <= cap:
            return self.infer(images)
        parts = [self.infer(images[s : s + cap]) for s in range(0, len(images), cap)]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.outputs}

    @abc.abstractmethod
    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The backend's own call: ``{output name: array}`` for a validated, contiguous uint8 batch."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass

    def close(self) -> None:
        """Free the backend's resources; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
