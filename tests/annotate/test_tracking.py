"""annotate with a tracker: IDs in every line, a resumed run's IDs equal an uninterrupted run's, MOT text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_app.annotate.video import annotate_config, annotate_video
from edge_app.cli import main as cli_main
from edge_app.data.synthetic import VideoConfig, write_video
from edge_app.frames.labellers import make_labeller
from edge_app.frames.modes.detect import DetectConfig
from edge_app.frames.tracking.base import TrackerConfig
from edge_app.frames.tracking.spec import TrackingSpec
from edge_app.runtime import open_engine


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = VideoConfig(width=320, height=240, frames=24, objects=3, min_size=50.0, max_size=90.0, seed=5)
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", cfg)[0]


def _ids(path: Path) -> list[list]:
    return [[lb.get("track_id") for lb in json.loads(s)["labels"]] for s in path.read_text().splitlines()]


def test_a_resumed_tracked_run_has_the_ids_of_an_uninterrupted_one(
    det_engine: Path, clip: Path, tmp_path: Path
) -> None:
    spec = TrackingSpec("bytetrack", TrackerConfig(activation=0.002, high_score=0.002, low_score=0.001, min_hits=1))
    with open_engine(det_engine, "onnxruntime", "fp32", "cpu") as eng:
        lab = make_labeller(eng, "detect", DetectConfig(conf=0.001))
        full_v, full_j = tmp_path / "full.mp4", tmp_path / "full.jsonl"
        steps, ann = spec.build()
        annotate_video(lab, clip, full_v, full_j, annotate_config(progress=False), steps=steps, annotators=ann)
        part_v, part_j = tmp_path / "part.mp4", tmp_path / "part.jsonl"
        steps, ann = spec.build()
        annotate_video(lab, clip, part_v, part_j, annotate_config(progress=False, max_frames=11), steps=steps)
        assert len(part_j.read_text().splitlines()) == 11  # as after a kill at frame 11
        steps, ann = spec.build()  # a new process: fresh steps, rebuilt from the lines
        r = annotate_video(lab, clip, part_v, part_j, annotate_config(progress=False), resume=True, steps=steps)
    full, resumed = _ids(full_j), _ids(part_j)
    assert r.frames_restored == 11 and len(resumed) == len(full) == 24
    assert any(i is not None for frame in full for i in frame)  # the tracker did give IDs
    assert resumed == full


def test_resuming_with_other_tracker_settings_is_refused(det_engine: Path, clip: Path, tmp_path: Path) -> None:
    out, jl = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    base = ["annotate", str(clip), "--engine", str(det_engine), "--mode", "detect", "--out", str(out)]
    base += ["--backend", "onnxruntime", "--no-progress", "--conf", "0.001"]
    assert cli_main([*base, "--track", "bytetrack", "--max-frames", "6", "--mot"]) == 0
    assert (tmp_path / "a.mot.txt").is_file()
    before = jl.read_text()
    assert cli_main([*base, "--track", "iou", "--resume"]) == 2  # another tracker: not the same run
    assert jl.read_text() == before  # nothing written was lost or mixed


def test_mot_without_a_tracker_is_one_sentence(det_engine: Path, clip: Path, tmp_path: Path, capsys) -> None:
    code = cli_main(["annotate", str(clip), "--engine", str(det_engine), "--out", str(tmp_path / "o.mp4"), "--mot"])
    assert code == 2 and "--mot writes track IDs; add --track bytetrack" in capsys.readouterr().err
