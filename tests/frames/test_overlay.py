"""Annotators: boxes in class colours, labels, the latency HUD, each switchable, legible at 480p and 4K."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_app.frames.overlay import (
    FONT,
    BoxAnnotator,
    HudInfo,
    LabelAnnotator,
    LatencyAnnotator,
    OverlayConfig,
    build_annotators,
    class_colour,
    text_scale,
)
from edge_app.frames.results import FrameResult, Label

SIZES = {"480p": (480, 854), "4K": (2160, 3840)}


def result_for(h: int, w: int) -> FrameResult:
    box = (w * 0.3, h * 0.3, w * 0.6, h * 0.7)
    return FrameResult(
        3,
        1.0,
        [Label(1, "circle", 0.91, box), Label(4, "star", 0.8)],
        {"capture": 1.0, "preprocess": 2.0, "inference": 5.5, "postprocess": 0.3},
    )


def hud() -> HudInfo:
    return HudInfo(
        stage_ms={"capture": 1.0, "preprocess": 2.0, "inference": 5.5, "postprocess": 0.3, "overlay": 0.9},
        end_to_end_ms=42.0,
        fps=29.7,
        dropped=3,
        backend="onnxruntime",
        precision="int8",
    )


@pytest.mark.parametrize("name", list(SIZES))
def test_text_height_scales_with_the_frame(name: str) -> None:
    h, w = SIZES[name]
    frame = np.zeros((h, w, 3), np.uint8)
    s = text_scale(frame)
    (_, th), _ = cv2.getTextSize("inference 5.5 ms", FONT, s, max(1, round(s * 2)))
    # Legible: at least ~13 px tall at 480p, and the same share of the frame height at 4K.
    assert th >= 13
    assert 0.02 <= th / h <= 0.04


@pytest.mark.parametrize("name", list(SIZES))
def test_boxes_are_drawn_in_the_class_colour(name: str) -> None:
    h, w = SIZES[name]
    frame = np.zeros((h, w, 3), np.uint8)
    r = result_for(h, w)
    out = BoxAnnotator().annotate(frame, r)
    x1, y1, x2, y2 = (int(v) for v in r.labels[0].box)
    ymid = (y1 + y2) // 2
    assert tuple(out[ymid, x1]) == class_colour(1)  # left edge of the box
    assert out[ymid, (x1 + x2) // 2].max() == 0  # inside stays untouched
    tab = out[y1 - h // 30 : y1, x1 : x1 + w // 20].reshape(-1, 3)
    assert (tab == class_colour(1)).all(axis=1).mean() > 0.4  # the label tab (coloured, white text) sits above the box


@pytest.mark.parametrize("name", list(SIZES))
def test_hud_and_labels_draw_in_their_corners(name: str) -> None:
    h, w = SIZES[name]
    frame = np.zeros((h, w, 3), np.uint8)
    for a in build_annotators(OverlayConfig(boxes=False), hud):
        frame = a.annotate(frame, result_for(h, w))
    assert frame[: h // 8, : w // 4].any(), "labels in the top-left corner"
    assert frame[-h // 8 :, : w // 4].any(), "HUD in the bottom-left corner"
    assert not frame[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].any(), "no banner while the source is ok"


def test_hud_lines_hold_every_number_and_each_can_be_turned_off() -> None:
    r = result_for(480, 854)
    lines = " / ".join(LatencyAnnotator(hud).lines(r, hud()))
    for part in (
        "capture 1.0",
        "preprocess 2.0",
        "inference 5.5",
        "postprocess 0.3",
        "overlay 0.9",
        "end-to-end 42.0 ms",
        "29.7 FPS",
        "dropped 3",
        "onnxruntime int8",
    ):
        assert part in lines
    quiet = LatencyAnnotator(hud, show_stages=False, show_fps=False, show_engine=False, show_dropped=False)
    assert quiet.lines(r, hud()) == ["end-to-end 42.0 ms"]
    assert [type(a) for a in build_annotators(OverlayConfig(labels=False, hud=False))] == [BoxAnnotator]


def test_reconnecting_banner() -> None:
    frame = np.zeros((480, 854, 3), np.uint8)
    info = HudInfo(status="reconnecting")
    LatencyAnnotator(lambda: info).annotate(frame, FrameResult(0, 0.0))
    assert frame[200:300, 300:550].any()


def test_label_annotator_uses_unboxed_labels_only() -> None:
    frame = np.zeros((480, 854, 3), np.uint8)
    r = FrameResult(0, 0.0, [Label(1, "circle", 0.9, (400, 300, 500, 400))])
    LabelAnnotator().annotate(frame, r)
    assert not frame.any()


def test_class_colours_differ() -> None:
    assert len({class_colour(i) for i in range(6)}) == 6
