"""detect mode: a detector engine's in-graph decoded boxes through the frame loop, mapped back to frame pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.errors import FieldError
from edge_app.frames.labellers import make_labeller
from edge_app.frames.modes.detect import DetectConfig
from edge_app.frames.pipeline import PipelineConfig, run_pipeline
from edge_app.geometry import boxes_to_frame, to_batch
from edge_app.runtime import open_engine
from tests.frames.fakes import FakeSource, RecordingSink
from tests.helpers import write_tiny_video


def _frames(n: int = 3, size: tuple[int, int] = (200, 120)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(n)]


def test_boxes_are_the_engines_rows_above_the_threshold_in_frame_pixels(det_engine: Path) -> None:
    frames = _frames()
    with open_engine(det_engine, "onnxruntime", "fp32", "cpu") as eng:
        lab = make_labeller(eng, "detect", DetectConfig(conf=0.0, max_det=7))
        labels, timings = lab.label(frames)
        dets = eng.infer(to_batch(frames, eng.meta.input))["dets"]
    assert timings.inference > 0
    for f, labs, d in zip(frames, labels, dets):
        assert 0 < len(labs) <= 7
        want = boxes_to_frame(d[:7, :4], f.shape[:2], eng.meta.input)
        for lb, w, row in zip(labs, want, d):
            assert lb.class_id == int(row[5]) and lb.name == eng.meta.labels[lb.class_id]
            assert lb.score == pytest.approx(float(row[4]), abs=1e-6)
            np.testing.assert_allclose(lb.box, w, atol=1e-3)
            x1, y1, x2, y2 = lb.box
            assert 0 <= x1 < x2 <= f.shape[1] and 0 <= y1 < y2 <= f.shape[0]


def test_the_engines_threshold_is_the_default(det_engine: Path) -> None:
    with open_engine(det_engine, "onnxruntime", "fp32", "cpu") as eng:
        lab = make_labeller(eng, "detect")
        assert lab.conf == pytest.approx(float(eng.meta.threshold))
        labels, _ = lab.label(_frames(2))
    assert all(lb.score >= lab.conf for labs in labels for lb in labs)


def test_detect_mode_runs_through_the_pipeline(det_engine: Path) -> None:
    sink = RecordingSink()
    with open_engine(det_engine, "onnxruntime", "fp32", "cpu") as eng:
        rep = run_pipeline(
            make_labeller(eng, "detect", DetectConfig(conf=0.0, max_det=3)),
            FakeSource(n=6, size=(160, 90)),
            [sink],
            PipelineConfig(batch=2),
        )
    assert rep.frames_written == 6 and rep.mode == "detect" and sink.indices == list(range(6))
    assert all(0 < len(r.labels) <= 3 and all(lb.box is not None for lb in r.labels) for r in sink.results)


@pytest.mark.parametrize(
    "kw, msg", [({"conf": 1.5}, "conf 1.5 is not a probability"), ({"max_det": 0}, "max_det 0 must be")]
)
def test_bad_settings_name_the_field(kw: dict, msg: str) -> None:
    with pytest.raises(FieldError, match=msg):
        DetectConfig(**kw)


def test_cli_detect_on_a_video_and_the_wrong_engine_kinds(
    det_engine: Path, tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = write_tiny_video(tmp_path / "v.mp4", frames=6)
    out = tmp_path / "out"
    assert (
        main(
            [
                "annotate",
                str(video),
                "--engine",
                str(det_engine),
                "--mode",
                "detect",
                "--conf",
                "0",
                "--max-det",
                "4",
                "--out",
                str(out),
                "--no-progress",
                "--backend",
                "onnxruntime",
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in (out / "v.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(6))
    assert all(
        0 < len(x["labels"]) <= 4 and {"class_id", "class", "score", "box"} <= set(x["labels"][0]) for x in lines
    )
    capsys.readouterr()
    assert (
        main(["annotate", str(video), "--engine", str(tiny_engine), "--mode", "detect", "--out", str(tmp_path / "o2")])
        == 2
    )
    assert "--mode 'detect' needs a detect engine, but engine 'tiny' has task 'classify'" in capsys.readouterr().err
    assert (
        main(["annotate", str(video), "--engine", str(det_engine), "--mode", "classify", "--out", str(tmp_path / "o3")])
        == 2
    )
    assert (
        "needs a classify engine, but engine 'det' has task 'detect'; modes for detect engines: 'detect'"
        in capsys.readouterr().err
    )
    assert (
        main(
            [
                "annotate",
                str(video),
                "--engine",
                str(det_engine),
                "--mode",
                "detect",
                "--max-det",
                "0",
                "--out",
                str(tmp_path / "o4"),
            ]
        )
        == 2
    )
    assert "--max-det 0 must be" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
