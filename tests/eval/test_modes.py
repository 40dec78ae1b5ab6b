"""detect vs tiles on the same frames, scored by the same tool (faster-coco-eval) and timed in turns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import FieldError, UserError
from edge_app.eval.modes import compare_modes, format_modes, heldout_comparison, labels_to_dets, run_modes
from edge_app.frames.results import Label
from edge_app.runtime import open_engine
from tests.frames.fakes import LABELS, FakeDetEngine, FakeEngine

NAMES = LABELS[1:]  # the shapes: a detector has no background class


def test_labels_become_detector_rows_and_background_or_boxless_labels_are_left_out() -> None:
    labs = [
        Label(2, "square", 0.8, (1.0, 2.0, 3.0, 4.0)),
        Label(0, "background", 0.9, (0.0, 0.0, 5.0, 5.0)),
        Label(1, "circle", 0.7, None),
        Label(5, "cross", 0.6, (5.0, 6.0, 7.0, 8.0)),
    ]
    rows = labels_to_dets(labs, NAMES)
    np.testing.assert_allclose(rows, [[1, 2, 3, 4, 0.8, NAMES.index("square")], [5, 6, 7, 8, 0.6, 4]], rtol=1e-6)
    assert labels_to_dets([], NAMES).shape == (0, 6)


def test_a_detector_that_finds_every_object_scores_one_and_both_modes_are_timed() -> None:
    h, w = 120, 160
    frames = [np.full((h, w, 3), 200, np.uint8) for _ in range(7)]  # bright: the fake classifier says 'circle'
    truth = [np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32) for _ in frames]  # what FakeDetEngine finds
    classes = [np.array([NAMES.index("circle")]) for _ in frames]
    res = compare_modes({"detect": FakeDetEngine(), "tiles": FakeEngine()}, frames, truth, classes, NAMES, block=3)
    d, t = res["detect"], res["tiles"]
    assert d.map50 == pytest.approx(1.0) and d.map50_95 == pytest.approx(1.0)
    assert (d.precision, d.recall, d.frames) == (1.0, 1.0, 7) and d.conf == pytest.approx(0.3)
    # Tiles: every tile of a bright frame is a 'circle' tile; its merged boxes are tiles, not the object.
    assert 0.0 <= t.map50 <= 1.0 and 0.0 <= t.precision <= 1.0 and t.conf == pytest.approx(0.7)
    assert all(r.ms_per_frame > 0 and r.ms_p90 >= r.ms_per_frame for r in (d, t))
    assert "detect " in d.line() and "ms/frame" in t.line()


def test_a_detector_that_finds_nothing_scores_zero() -> None:
    frames = [np.zeros((64, 64, 3), np.uint8) for _ in range(3)]
    truth = [np.array([[0, 0, 8, 8]], np.float32) for _ in frames]  # an object far from what the fake finds
    res = compare_modes({"detect": FakeDetEngine()}, frames, truth, [np.array([3])] * 3, NAMES)
    assert res["detect"].map50 == 0.0 and res["detect"].recall == 0.0 and res["detect"].precision == 0.0


def test_heldout_comparison_runs_real_engines_of_both_tasks(det_engine: Path, tiny_engine: Path) -> None:
    with open_engine(det_engine, "onnxruntime") as det, open_engine(tiny_engine, "onnxruntime") as cls:
        res = heldout_comparison(det, cls, n_frames=2)
    assert set(res) == {"detect", "tiles"} and all(r.frames == 2 for r in res.values())
    assert "onnxruntime" in res["detect"].engine and "onnxruntime" in res["tiles"].engine


def test_run_modes_opens_both_engines_and_names_bad_values(det_engine: Path, tiny_engine: Path, tmp_path: Path) -> None:
    with pytest.raises(FieldError, match="frames 0 scores nothing") as e:
        run_modes(det_engine, tiny_engine, frames=0)
    assert str(e.value.reworded({"frames": "--frames"})).startswith("--frames 0 scores nothing")
    with pytest.raises(UserError):
        run_modes(tmp_path / "none", tiny_engine)
    res = run_modes(det_engine, tiny_engine, frames=1, backend="onnxruntime")
    lines = format_modes(res)
    assert len(lines) == 3 and lines[-1].startswith("detect takes ") and "x the ms per frame of tiles" in lines[-1]
