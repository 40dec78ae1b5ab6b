"""Classification accuracy of any backend on an image set, in the batches the backend accepts."""

from __future__ import annotations

import numpy as np

from edge_app.data.folder import ImageSet
from edge_app.runtime.base import Engine


def predict_logits(engine: Engine, data: ImageSet, batch: int = 64) -> np.ndarray:
    """Logits (N,C) of ``engine`` over ``data.images``."""
    if engine.max_batch:
        batch = min(batch, engine.max_batch)
    out = [engine.infer(data.images[s : s + batch])["logits"] for s in range(0, len(data), batch)]
    return np.concatenate(out) if out else np.zeros((0, engine.meta.num_classes), np.float32)
