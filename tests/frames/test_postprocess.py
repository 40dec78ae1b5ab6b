"""Postprocessing: top-k, the FrameResult round trip, NMS, and tiles -> boxes."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.frames.postprocess import box_iou, classwise_nms, nms, tiles_to_boxes, topk
from edge_app.frames.results import FrameResult, Label

LABELS = ["background", "circle", "square"]


def logits_for(rows: list[tuple[int, float]]) -> np.ndarray:
    """Logits whose softmax gives class ``c`` probability ``p`` (the rest split evenly) per row."""
    out = []
    for c, p in rows:
        q = (1 - p) / (len(LABELS) - 1)
        out.append([np.log(p if k == c else q) for k in range(len(LABELS))])
    return np.array(out, np.float32)


def test_topk_orders_by_score_and_validates_k() -> None:
    labs = topk(logits_for([(2, 0.7)]), LABELS, k=2)[0]
    assert [lab.name for lab in labs] == ["square", "background"]
    assert labs[0].score == pytest.approx(0.7, abs=1e-5)
    with pytest.raises(ValueError, match="top-k must be at least 1, got 0"):
        topk(logits_for([(1, 0.9)]), LABELS, k=0)


def test_frame_result_round_trips_through_its_json_line() -> None:
    r = FrameResult(
        4, 12.5, [Label(1, "circle", 0.9, (1.0, 2.0, 30.0, 40.0)), Label(2, "square", 0.1)], {"inference": 3.25}
    )
    back = FrameResult.from_dict(r.to_dict())
    assert back.index == 4 and back.labels[0].box == (1.0, 2.0, 30.0, 40.0) and back.labels[1].box is None
    assert back.timings == {"inference": 3.25}


def test_label_and_result_validation_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\], got 1.5"):
        Label(1, "circle", 1.5)
    with pytest.raises(ValueError, match="x2>=x1"):
        Label(1, "circle", 0.5, (10, 0, 5, 5))
    with pytest.raises(ValueError, match="stage timing 'inference' must be >= 0 ms"):
        FrameResult(0, 0.0, [], {"inference": -1.0})


def test_box_iou_of_known_boxes() -> None:
    a = np.array([0, 0, 10, 10], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    assert box_iou(a, b) == pytest.approx([1.0, 50 / 150, 0.0])


def test_nms_keeps_the_best_of_each_overlapping_group() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], float)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.5) == [1, 2]
    assert nms(boxes, scores, 0.99) == [1, 0, 2, 3]  # nothing overlaps that much: all kept, best first
    with pytest.raises(ValueError, match="IoU threshold must be in"):
        nms(boxes, scores, 1.5)


def test_classwise_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    labs = [
        Label(1, "circle", 0.9, (0, 0, 10, 10)),
        Label(2, "square", 0.8, (0, 0, 10, 10)),
        Label(1, "circle", 0.7, (1, 1, 10, 10)),
    ]
    kept = classwise_nms(labs, 0.5)
    assert [(lab.name, lab.score) for lab in kept] == [("circle", 0.9), ("square", 0.8)]


def test_tiles_to_boxes_thresholds_skips_background_and_shrinks() -> None:
    tiles = np.array([[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100], [600, 0, 700, 100]])
    lg = logits_for([(1, 0.95), (0, 0.99), (2, 0.4), (2, 0.8)])
    labs = tiles_to_boxes(lg, tiles, LABELS, conf=0.5, iou=0.5)
    assert [(lab.name, lab.box) for lab in labs] == [
        ("circle", (0.0, 0.0, 100.0, 100.0)),
        ("square", (600.0, 0.0, 700.0, 100.0)),
    ]
    # box_scale shrinks about the tile centre
    labs = tiles_to_boxes(lg, tiles, LABELS, conf=0.9, iou=0.5, box_scale=0.6)
    assert len(labs) == 1 and labs[0].box == pytest.approx((20.0, 20.0, 80.0, 80.0))


def test_tiles_to_boxes_votes_and_merge() -> None:
    # Two overlapping circle tiles (one object seen twice) and one lone square tile.
    tiles = np.array([[0, 0, 100, 100], [50, 0, 150, 100], [400, 0, 500, 100]])
    lg = logits_for([(1, 0.9), (1, 0.9), (2, 0.9)])
    labs = tiles_to_boxes(lg, tiles, LABELS, conf=0.5, iou=0.3, merge=True, min_votes=2)
    assert len(labs) == 1 and labs[0].name == "circle"
    assert labs[0].box == pytest.approx((25.0, 0.0, 125.0, 100.0))  # equal scores: the plain mean of both tiles
    with pytest.raises(ValueError, match="min_votes must be at least 1"):
        tiles_to_boxes(lg, tiles, LABELS, min_votes=0)
    with pytest.raises(ValueError, match="got 3 rows of logits for 2 tiles"):
        tiles_to_boxes(lg, tiles[:2], LABELS)
