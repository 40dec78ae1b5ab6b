"""Detection evaluation: matching at IoU >= 0.3 with class match, counts, and the video runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_app.errors import UserError
from edge_app.eval.boxes import evaluate_video, format_boxes, labels_from_jsonl, load_truth, match_frame, score
from edge_app.frames.labellers import TileConfig
from edge_app.frames.results import FrameResult, Label
from tests.frames.fakes import FakeEngine
from tests.helpers import write_tiny_video

TRUTH = [("circle", (0.0, 0.0, 100.0, 100.0)), ("square", (200.0, 200.0, 300.0, 300.0))]


def test_exact_hits_are_true_positives() -> None:
    pred = [Label(1, "circle", 0.9, (0, 0, 100, 100)), Label(2, "square", 0.8, (210, 210, 300, 300))]
    assert match_frame(pred, TRUTH)[:3] == (2, 0, 0)


def test_class_mismatch_low_iou_and_duplicates() -> None:
    wrong_class = Label(2, "square", 0.9, (0, 0, 100, 100))
    far = Label(1, "circle", 0.9, (60, 60, 160, 160))  # IoU 1600/18400 < 0.3
    assert match_frame([wrong_class], TRUTH)[:3] == (0, 1, 2)
    assert match_frame([far], TRUTH)[:3] == (0, 1, 2)
    dup = [Label(1, "circle", 0.9, (0, 0, 100, 100)), Label(1, "circle", 0.8, (0, 0, 90, 100))]
    tp, fp, fn, events = match_frame(dup, TRUTH)
    assert (tp, fp, fn) == (1, 1, 1)
    assert ("circle", "tp") in events and ("square", "fn") in events


def test_threshold_is_inclusive_at_iou_0_3() -> None:
    # Box of 0..100 x 0..30 inside the 100x100 truth: IoU exactly 0.3.
    assert match_frame([Label(1, "circle", 0.9, (0, 0, 100, 30))], TRUTH, iou=0.3)[0] == 1


def test_score_totals_precision_recall(tmp_path: Path) -> None:
    truth = {0: TRUTH, 1: TRUTH[:1]}
    preds = [
        (0, [Label(1, "circle", 0.9, (0, 0, 100, 100))]),
        (1, [Label(1, "circle", 0.9, (0, 0, 100, 100)), Label(2, "square", 0.7, (500, 500, 600, 600))]),
    ]
    s = score(preds, truth)
    assert (s.tp, s.fp, s.fn, s.frames) == (2, 1, 1, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.per_class["square"] == {"tp": 0, "fp": 1, "fn": 1}
    with pytest.raises(UserError, match="frame 7 has no ground truth"):
        score([(7, [])], truth)


def test_truth_and_prediction_files(tmp_path: Path) -> None:
    t = tmp_path / "v.truth.jsonl"
    t.write_text(json.dumps({"frame": 0, "time": 0.0, "objects": [{"class": "circle", "box": [1, 2, 3, 4]}]}) + "\n")
    assert load_truth(t) == {0: [("circle", (1.0, 2.0, 3.0, 4.0))]}
    t.write_text("{not json\n")
    with pytest.raises(UserError, match="line 1 of .* is not a ground-truth record"):
        load_truth(t)
    with pytest.raises(UserError, match="does not exist"):
        load_truth(tmp_path / "missing.jsonl")
    p = tmp_path / "pred.jsonl"
    p.write_text(json.dumps(FrameResult(0, 1.0, [Label(1, "circle", 0.5, (1, 2, 3, 4))]).to_dict()) + "\n")
    assert labels_from_jsonl(p)[0][1][0].box == (1.0, 2.0, 3.0, 4.0)


def test_evaluate_video_counts_every_missed_object(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "v.mp4", frames=6, size=(160, 96))
    truth = load_truth(tmp_path / "v.truth.jsonl")
    # bright=255: the fake engine calls every tile background, so every truth object is a miss.
    r = evaluate_video(FakeEngine(bright=255), video, tmp_path / "v.truth.jsonl", TileConfig(grid=(2, 1)), stride=2)
    assert r.frames == 3 and r.tp == 0 and r.fp == 0
    assert r.fn == sum(len(truth[i]) for i in (0, 2, 4))
    assert r.recall == 0.0 and r.precision == 1.0
    assert r.config.grid == (2, 1) and r.to_dict()["config"]["grid"] == (2, 1)
    lines = format_boxes(r)
    assert lines[0].startswith("tiles 2x1 ") and "precision 1.000  recall 0.000" in lines[1]
