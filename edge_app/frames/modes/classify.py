"""``classify``: each whole frame resized to the model input, the top-k classes kept; no boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.errors import FieldError, shown
from edge_app.frames.modes.base import Labeller, ModeConfig, ModeOption, register_mode
from edge_app.frames.postprocess import topk
from edge_app.frames.results import Label
from edge_app.geometry import to_batch


@dataclass(frozen=True)
class ClassifyConfig(ModeConfig):
    """Classify mode settings."""

    # Three labels fit the corner of a 480p frame and show at a glance how sure the model is.
    top_k: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)):
            raise FieldError("top_k", shown(self.top_k), "is not a whole number; e.g. 3")
        if self.top_k < 1:
            raise FieldError("top_k", shown(self.top_k), "must be at least 1; e.g. 3")

    @classmethod
    def cli_options(cls) -> tuple[ModeOption, ...]:
        """``--top-k``."""
        return (ModeOption("--top-k", "top_k", "labels per frame", int, "K"),)


@register_mode("classify")
class ClassifyLabeller(Labeller):
    """Whole frame -> the top-k classes, no boxes.

    All frames of a step go into one engine call.
    """

    config_type = ClassifyConfig
    task = "classify"
    outputs = ("logits",)
    config: ClassifyConfig

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """Each frame resized to the model input; decode needs nothing more."""
        return to_batch(frames, self.spec), None

    def decode(self, outputs: dict[str, np.ndarray], context: Any) -> list[list[Label]]:
        """Softmax and the ``top_k`` best classes per frame."""
        return topk(outputs["logits"], self.names, self.config.top_k)
