"""Logits -> labels: softmax, top-k, and the typed per-frame result that flows to annotators and sinks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Label:
    """One recognised thing: class, confidence, and (in tiles mode) its box x1,y1,x2,y2 in frame pixels."""

    class_id: int
    name: str
    score: float
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0 + 1e-6:
            raise ValueError(f"score must be in [0, 1], got {self.score}")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not (x2 >= x1 and y2 >= y1):
                raise ValueError(f"box must be x1,y1,x2,y2 with x2>=x1 and y2>=y1, got {self.box}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"class_id": self.class_id, "class": self.name, "score": round(self.score, 5)}
        if self.box is not None:
            d["box"] = [round(float(v), 1) for v in self.box]
        return d


@dataclass
class FrameResult:
    """Everything known about one frame after inference; validated on creation."""

    index: int
    capture_time: float  # time.monotonic() when the frame was read
    labels: list[Label] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"frame index must be >= 0, got {self.index}")
        for k, v in self.timings.items():
            if not v >= 0:
                raise ValueError(f"stage timing '{k}' must be >= 0 ms, got {v}")

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.index, "capture_time": round(self.capture_time, 6),
                "labels": [lab.to_dict() for lab in self.labels],
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}}


def topk(logits: np.ndarray, labels: list[str], k: int = 3) -> list[list[Label]]:
    """Top-``k`` labels per row of ``logits`` (N,C), highest score first."""
    if k < 1:
        raise ValueError(f"top-k must be at least 1, got {k}")
    probs = softmax(logits)
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1)[:, :k]
    return [[Label(int(c), labels[int(c)], float(p[c])) for c in row] for p, row in zip(probs, idx)]
