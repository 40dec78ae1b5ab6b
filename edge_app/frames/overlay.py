"""Annotators: settings in ``__init__``, ``annotate(frame, result) -> frame`` (drawn in place, frame returned).

Every size (font, line width, padding) is proportional to the frame height, so the same overlay reads the
same at 480p and at 4K. The HUD does not compute anything itself: it shows a :class:`HudInfo` snapshot the
frame loop builds from its StageTimer, so the overlay, the JSON lines and the reports agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from edge_app.frames.results import FrameResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
HUD_STAGES = ("capture", "preprocess", "inference", "postprocess", "overlay")

# Class colours (BGR), well apart in hue and bright enough for white text on them; indexed by class id.
PALETTE = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (211, 188, 0),
    (209, 85, 0),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (255, 56, 203),
    (200, 149, 255),
]


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable BGR colour per class id."""
    return PALETTE[class_id % len(PALETTE)]


def text_scale(frame: np.ndarray) -> float:
    """Font scale proportional to frame height (0.7 at 720p), floored so 240p text stays readable."""
    return max(0.4, frame.shape[0] / 720 * 0.7)


def put_text_box(
    frame: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    fg: tuple[int, int, int] = (255, 255, 255),
    bg: tuple[int, int, int] = (0, 0, 0),
) -> int:
    """Draw ``text`` on a filled box with its top-left at ``org`` (clamped into the frame); returns the box height."""
    thick = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(2, round(4 * scale))
    bw, bh = w + 2 * pad, h + base + 2 * pad
    x = int(min(max(0, org[0]), max(0, frame.shape[1] - bw)))
    y = int(min(max(0, org[1]), max(0, frame.shape[0] - bh)))
    cv2.rectangle(frame, (x, y), (x + bw, y + bh), bg, -1)
    cv2.putText(frame, text, (x + pad, y + pad + h), FONT, scale, fg, thick, cv2.LINE_AA)
    return bh


class LabelAnnotator:
    """Whole-frame labels ("star 0.97") in the top-left corner; boxed labels are left to BoxAnnotator."""

    def __init__(self, max_labels: int | None = None) -> None:
        # None: every whole-frame label of the result; the mode already chose how many (classify's top_k).
        self.max_labels = max_labels

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw the unboxed labels (at most ``max_labels``) with their confidence."""
        s = text_scale(frame)
        y = round(8 * s)
        for lab in [lab for lab in result.labels if lab.box is None][: self.max_labels]:
            y += put_text_box(frame, f"{lab.name} {lab.score:.2f}", (round(8 * s), y), s, bg=class_colour(lab.class_id))
        return frame


class BoxAnnotator:
    """Boxes in class colours with "class 0.93" on a tab above each box."""

    def __init__(self, thickness: float = 3.0, show_label: bool = True) -> None:
        self.thickness = thickness  # at 720p; scaled with frame height
        self.show_label = show_label

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw every label that has a box."""
        s = text_scale(frame)
        t = max(1, round(self.thickness * frame.shape[0] / 720))
        for lab in result.labels:
            if lab.box is None:
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in lab.box)
            col = class_colour(lab.class_id)
            cv2.rectangle(frame, (x1, y1), (x2, y2), col, t, cv2.LINE_AA)
            if self.show_label:
                text = f"{lab.name} {lab.score:.2f}"
                (_, h), base = cv2.getTextSize(text, FONT, s * 0.8, max(1, round(s * 1.6)))
                put_text_box(frame, text, (x1, y1 - h - base - 2 * max(2, round(3.2 * s))), s * 0.8, bg=col)
        return frame


@dataclass
class HudInfo:
    """What the latency HUD shows; built by the frame loop from its StageTimer each frame."""

    stage_ms: dict[str, float] = field(default_factory=dict)  # rolling median per stage
    end_to_end_ms: float = float("nan")  # capture -> output, rolling median
    fps: float = float("nan")  # over the loop's sliding window
    dropped: int = 0
    backend: str = ""
    precision: str = ""
    status: str = "ok"  # the source's status: "ok" or "reconnecting"


class LatencyAnnotator:
    """Latency HUD in the bottom-left corner; each line can be turned off in ``__init__``.

    Lines: per-stage ms (capture, preprocess, inference, postprocess, overlay), end-to-end latency and
    FPS, dropped frames, backend and precision. A "reconnecting" banner appears when the source says so.
    ``info`` is called once per frame; without it the HUD shows the frame's own stage timings only.
    """

    def __init__(
        self,
        info: Callable[[], HudInfo] | None = None,
        stages: tuple[str, ...] = HUD_STAGES,
        show_stages: bool = True,
        show_latency: bool = True,
        show_fps: bool = True,
        show_dropped: bool = True,
        show_engine: bool = True,
        show_status: bool = True,
    ) -> None:
        self.info = info
        self.stages = stages
        self.show_stages = show_stages
        self.show_latency = show_latency
        self.show_fps = show_fps
        self.show_dropped = show_dropped
        self.show_engine = show_engine
        self.show_status = show_status

    def lines(self, result: FrameResult, info: HudInfo) -> list[str]:
        """The HUD's text lines for this frame (also handy for tests and logs)."""
        out: list[str] = []
        ms = {**result.timings, **{k: v for k, v in info.stage_ms.items() if v == v}}
        if self.show_stages:
            parts = [f"{k} {ms[k]:.1f}" for k in self.stages if k in ms]
            if parts:
                out.append(" | ".join(parts) + " ms")
        perf = []
        if self.show_latency and info.end_to_end_ms == info.end_to_end_ms:
            perf.append(f"end-to-end {info.end_to_end_ms:.1f} ms")
        if self.show_fps and info.fps == info.fps:
            perf.append(f"{info.fps:.1f} FPS")
        if self.show_dropped:
            perf.append(f"dropped {info.dropped}")
        if perf:
            out.append("  ".join(perf))
        if self.show_engine and (info.backend or info.precision):
            out.append(f"{info.backend} {info.precision}".strip())
        return out

    def annotate(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw the HUD lines bottom-up from the bottom-left corner, and the status banner if not ok."""
        info = self.info() if self.info else HudInfo()
        s = text_scale(frame) * 0.75
        y = frame.shape[0] - round(6 * s)
        for text in reversed(self.lines(result, info)):
            (_, h), base = cv2.getTextSize(text, FONT, s, max(1, round(s * 2)))
            y -= h + base + 2 * max(2, round(4 * s))
            put_text_box(frame, text, (round(8 * s), y), s)
        if self.show_status and info.status and info.status != "ok":
            big = text_scale(frame) * 1.4
            (w, _), _ = cv2.getTextSize(info.status, FONT, big, max(1, round(big * 2)))
            put_text_box(frame, info.status, ((frame.shape[1] - w) // 2, frame.shape[0] // 2), big, bg=(0, 0, 200))
        return frame


@dataclass(frozen=True)
class OverlayConfig:
    """Which annotators run; all on by default, each can be turned off (``--no-labels`` etc.)."""

    labels: bool = True
    boxes: bool = True
    hud: bool = True
    # Whole-frame labels drawn at most; None: all the mode produced (classify already keeps its top_k).
    max_labels: int | None = None


def build_annotators(cfg: OverlayConfig, info: Callable[[], HudInfo] | None = None) -> list:
    """The annotators ``cfg`` asks for, in drawing order (boxes under labels under the HUD)."""
    out: list = []
    if cfg.boxes:
        out.append(BoxAnnotator())
    if cfg.labels:
        out.append(LabelAnnotator(cfg.max_labels))
    if cfg.hud:
        out.append(LatencyAnnotator(info))
    return out
