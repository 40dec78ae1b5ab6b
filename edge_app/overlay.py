"""Annotators: settings in ``__init__``, ``annotate(frame, result) -> frame`` (drawn in place)."""

from __future__ import annotations

import cv2
import numpy as np

from edge_app.postprocess import FrameResult


def text_scale(frame: np.ndarray) -> float:
    """Font scale proportional to frame height, so text is legible from 480p to 4K."""
    return max(0.4, frame.shape[0] / 720 * 0.7)


def put_text_box(frame: np.ndarray, text: str, org: tuple[int, int], scale: float,
                 fg: tuple[int, int, int] = (255, 255, 255), bg: tuple[int, int, int] = (0, 0, 0)) -> int:
    """Draw ``text`` on a filled box with its top-left at ``org``; returns the box height."""
    thick = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    pad = max(2, round(4 * scale))
    cv2.rectangle(frame, (x, y), (x + w + 2 * pad, y + h + base + 2 * pad), bg, -1)
    cv2.putText(frame, text, (x + pad, y + pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, fg, thick, cv2.LINE_AA)
    return h + base + 2 * pad


class LabelAnnotator:
    """Top-k classification labels ("star 0.97") in the top-left corner."""

    def __init__(self, top_k: int = 3) -> None:
        self.top_k = top_k

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        s = text_scale(frame)
        y = round(8 * s)
        for lab in [lab for lab in result.labels if lab.box is None][: self.top_k]:
            y += put_text_box(frame, f"{lab.name} {lab.score:.2f}", (round(8 * s), y), s)
        return frame


class LatencyAnnotator:
    """Per-stage milliseconds of this frame in the bottom-left corner."""

    def __init__(self, stages: tuple[str, ...] = ("preprocess", "inference", "postprocess")) -> None:
        self.stages = stages

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        s = text_scale(frame) * 0.8
        parts = [f"{k} {result.timings[k]:.1f} ms" for k in self.stages if k in result.timings]
        if parts:
            put_text_box(frame, "  ".join(parts), (round(8 * s), frame.shape[0] - round(40 * s)), s)
        return frame
