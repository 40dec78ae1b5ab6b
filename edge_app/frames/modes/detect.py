"""``detect``: a detector engine (meta.json task 'detect'), one pass per frame, boxes decoded inside the graph.

The engine's ``dets`` output is (N, K, 6) rows of x1, y1, x2, y2, score, class in model-input pixels, sorted
by score (rows past the last peak score 0). This mode keeps rows at or above ``conf`` (default: the
operating threshold chosen on validation data and stored in meta.json), at most ``max_det`` per frame, and
maps boxes back to frame pixels through the same resize the host applied (letterbox or stretch). Rows whose
class id names no class (torchvision's COCO "N/A" gaps, "__background__") are never shown; ``classes`` keeps
only the named ones. Every task whose descriptor names this mode (``detect``, ``tv_detect``) runs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.errors import FieldError, shown
from edge_app.frames.modes.base import Labeller, ModeConfig, ModeOption, register_mode
from edge_app.frames.results import Label
from edge_app.geometry import boxes_to_frame, to_batch
from edge_app.models.labels import UNNAMED
from edge_app.models.tasks import score_threshold


@dataclass(frozen=True)
class DetectConfig(ModeConfig):
    """Detect mode settings."""

    # None: the engine's own operating threshold (max F1 on its validation set, meta.json 'threshold').
    conf: float | None = None
    max_det: int = 100  # at most the graph's K rows per frame
    # None: every class. Names, as the engine's labels spell them; checked against the engine when it opens.
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            if isinstance(self.classes, str) or not all(isinstance(c, str) and c.strip() for c in self.classes):
                raise FieldError("classes", shown(self.classes), "must be class names, e.g. ('person', 'car')")
            object.__setattr__(self, "classes", tuple(c.strip() for c in self.classes))
        if self.conf is not None and not 0.0 <= self.conf <= 1.0:
            raise FieldError("conf", shown(self.conf), "is not a probability; use a value between 0 and 1, e.g. 0.4")
        if isinstance(self.max_det, bool) or not isinstance(self.max_det, (int, np.integer)) or self.max_det < 1:
            raise FieldError("max_det", shown(self.max_det), "must be a whole number of at least 1; e.g. 100")

    @classmethod
    def cli_options(cls) -> tuple[ModeOption, ...]:
        """``--conf`` (shared with tiles: one flag, each mode takes it) and ``--max-det``."""
        return (
            ModeOption(
                "--conf", "conf", "minimum score of a box", float, "SCORE", default_text="the engine's own threshold"
            ),
            ModeOption("--max-det", "max_det", "boxes per frame at most", int, "N"),
            ModeOption(
                "--classes",
                "classes",
                "keep only these classes, comma-separated names as in the engine's labels (e.g. person,car)",
                _class_list,
                "A,B",
                default_text="every class",
            ),
        )


def _class_list(text: str) -> tuple[str, ...]:
    """``person,car`` -> ('person', 'car'); an empty name is a ValueError sentence."""
    names = tuple(s.strip() for s in text.split(","))
    if not all(names):
        raise ValueError(f"'{text}' has an empty class name; write them like person,car")
    return names


@register_mode("detect")
class DetectLabeller(Labeller):
    """Detector engine -> boxes with class and score, one engine pass per frame (decode in the graph)."""

    config_type = DetectConfig
    task = "detect"
    outputs = ("dets",)
    config: DetectConfig

    def setup(self) -> None:
        """The score threshold: the config's, else the engine's own, else its task's default."""
        self.conf = float(self.config.conf if self.config.conf is not None else score_threshold(self.engine.meta))
        shown_ids = np.array([n not in UNNAMED for n in self.names], dtype=bool)
        if self.config.classes is not None:
            unknown = [c for c in self.config.classes if c not in self.names or c in UNNAMED]
            if unknown:
                valid = [n for n in self.names if n not in UNNAMED]
                raise FieldError(
                    "classes",
                    f"'{unknown[0]}'",
                    f"is not a class of engine '{self.engine.meta.name}'; it has {len(valid)} classes, e.g. "
                    f"{', '.join(valid[:5])}",
                )
            shown_ids &= np.isin(np.array(self.names, dtype=object), np.array(self.config.classes, dtype=object))
        self.shown_ids = shown_ids  # class id -> shown (N/A ids and filtered-out classes are not)

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """Each frame resized (letterboxed) to the model input; decode needs the frame sizes."""
        return to_batch(frames, self.spec), [f.shape[:2] for f in frames]

    def decode(self, outputs: dict[str, np.ndarray], context: Any) -> list[list[Label]]:
        """Rows above the threshold, boxes in frame pixels, clipped to the frame."""
        out: list[list[Label]] = []
        n = len(self.names)
        for dets, (h, w) in zip(outputs["dets"], context):
            ids = dets[:, 5]
            ok = (dets[:, 4] >= self.conf) & (ids >= 0) & (ids < n)
            ok[ok] = self.shown_ids[ids[ok].astype(np.int64)]
            keep = dets[ok][: self.config.max_det]
            boxes = boxes_to_frame(keep[:, :4].astype(np.float64), (h, w), self.spec) if len(keep) else keep[:, :4]
            labels = []
            for (x1, y1, x2, y2), score, cls in zip(boxes, keep[:, 4], keep[:, 5]):
                x1, x2 = float(np.clip(x1, 0, w)), float(np.clip(x2, 0, w))
                y1, y2 = float(np.clip(y1, 0, h)), float(np.clip(y2, 0, h))
                if x2 > x1 and y2 > y1:
                    labels.append(
                        Label(int(cls), self.names[int(cls)], float(min(max(score, 0.0), 1.0)), (x1, y1, x2, y2))
                    )
            out.append(labels)
        return out
