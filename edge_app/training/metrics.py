"""Classification metrics on logits: top-1 and agreement with a reference (pure NumPy, usable from any floor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax equals the label."""
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


@dataclass(frozen=True)
class Agreement:
    """How closely one model's logits follow a reference's on the same images."""

    agreement: float  # share of images whose top-1 class matches the reference's
    max_abs_dev: float  # largest absolute logit difference
    mean_abs_dev: float


def compare(logits: np.ndarray, reference: np.ndarray) -> Agreement:
    """Top-1 agreement and logit deviation of ``logits`` against ``reference`` (e.g. fp32)."""
    d = np.abs(logits - reference)
    return Agreement(
        agreement=float((logits.argmax(1) == reference.argmax(1)).mean()),
        max_abs_dev=float(d.max()) if d.size else 0.0,
        mean_abs_dev=float(d.mean()) if d.size else 0.0,
    )
