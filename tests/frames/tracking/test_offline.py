"""Re-tracking stored detections and replaying written lines: the same IDs as the online run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.frames.results import FrameResult, Label
from edge_app.frames.tracking import build_tracker, parse_line, run_steps
from edge_app.frames.tracking.counting import LineCounter
from edge_app.frames.tracking.offline import read_annotations, replay, retrack


def detections(frames: int = 60, seed: int = 3) -> list[list[Label]]:
    """Full-precision boxes (not JSON-rounded) of 5 objects moving with jitter, occasional misses, a few FPs."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(50, 500, (5, 2))
    vel = rng.uniform(-4, 4, (5, 2))
    out = []
    for f in range(frames):
        labels = []
        for k in range(5):
            if rng.random() < 0.1:
                continue
            x, y = pos[k] + vel[k] * f + rng.normal(0, 1.3, 2)
            labels.append(Label(k % 2, f"c{k % 2}", float(rng.uniform(0.2, 1.0)), (x, y, x + 41.37, y + 33.91)))
        if rng.random() < 0.3:
            x, y = rng.uniform(0, 500, 2)
            labels.append(Label(0, "c0", float(rng.uniform(0.1, 0.7)), (x, y, x + 30.05, y + 30.05)))
        out.append(labels)
    return out


def steps(name: str = "bytetrack") -> list:
    return [build_tracker(name), LineCounter(parse_line("mid=300,0,300,599"))]


def online(name: str, dets: list[list[Label]]) -> list[FrameResult]:
    st = steps(name)
    out = []
    for f, labels in enumerate(dets):
        labels, extra = run_steps(st, 0, f, labels)
        out.append(FrameResult(f, 0.01 * f, labels, {"inference": 1.0}, extra=extra))
    return out


def write_lines(path: Path, results: list[FrameResult]) -> Path:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in results), encoding="utf-8")
    return path


def track_ids(results: list[FrameResult]) -> list[list[int | None]]:
    return [[lb.track_id for lb in r.labels] for r in results]


@pytest.mark.parametrize("name", ["bytetrack", "iou"])
def test_retrack_gives_the_online_ids_and_counts(tmp_path: Path, name: str) -> None:
    dets = detections()
    live = online(name, dets)
    assert any(lb.track_id for r in live for lb in r.labels)
    untracked = [FrameResult(f, 0.01 * f, labels, {"inference": 1.0}) for f, labels in enumerate(dets)]
    src = write_lines(tmp_path / "a.jsonl", untracked)
    summary = retrack(src, tmp_path / "b.jsonl", steps(name), mot=tmp_path / "b.mot.txt")
    again = read_annotations(tmp_path / "b.jsonl")
    assert track_ids(again) == track_ids(live)
    assert again[-1].extra["counts"] == live[-1].extra["counts"]
    assert summary.frames == len(dets) and summary.tracks > 0
    assert (tmp_path / "b.mot.txt").read_text().startswith("1,") or (tmp_path / "b.mot.txt").read_text()


def test_retrack_replaces_old_ids_and_keeps_other_fields(tmp_path: Path) -> None:
    live = online("bytetrack", detections())
    src = write_lines(
        tmp_path / "a.jsonl",
        [
            FrameResult(r.index, r.capture_time, r.labels, r.timings, media_time=0.5, extra={**r.extra, "note": 1})
            for r in live
        ],
    )
    retrack(src, tmp_path / "b.jsonl", [build_tracker("iou")])
    first = json.loads((tmp_path / "b.jsonl").read_text().splitlines()[-1])
    assert "counts" not in first and first["note"] == 1 and first["media_time"] == 0.5
    with pytest.raises(UserError, match="is the input file; write the re-tracked lines to another file"):
        retrack(src, src, [build_tracker("iou")])


@pytest.mark.parametrize("name", ["bytetrack", "iou"])
def test_replay_after_a_kill_gives_the_uninterrupted_ids(tmp_path: Path, name: str) -> None:
    dets = detections(80)
    whole = online(name, dets)
    killed_at = 37
    written = read_annotations(write_lines(tmp_path / "run.jsonl", whole[:killed_at]))
    st = steps(name)
    assert replay(st, written) == killed_at
    resumed = []
    for f in range(killed_at, len(dets)):  # the resumed run: the engine's full-precision boxes again
        labels, extra = run_steps(st, 0, f, dets[f])
        resumed.append(FrameResult(f, 0.0, labels, extra=extra))
    assert track_ids(resumed) == track_ids(whole[killed_at:])
    assert resumed[-1].extra["counts"] == whole[-1].extra["counts"]


def test_replay_refuses_lines_tracked_with_other_settings(tmp_path: Path) -> None:
    written = online("bytetrack", detections())
    with pytest.raises(UserError, match=r"frame \d+ was written with other tracker settings"):
        replay([build_tracker("bytetrack", min_hits=5)], written)


def test_not_annotations_and_torn_tails_are_one_sentence(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"frame": 0, "time": 0.0, "objects": []}\n')
    with pytest.raises(UserError, match="line 1 is not an annotation \\(a JSON object with 'frame' and 'labels'\\)"):
        read_annotations(other)
    text = tmp_path / "text.jsonl"
    text.write_text("hello\n")
    with pytest.raises(UserError, match="line 1 is not JSON; pass an annotations .jsonl file"):
        read_annotations(text)
    torn = write_lines(tmp_path / "torn.jsonl", online("iou", detections(5)))
    with open(torn, "a") as f:
        f.write('{"frame": 5, "capture_ti')
    with pytest.raises(UserError, match="ends in a torn line 6 \\(the run was cut off while writing it\\)"):
        read_annotations(torn)
    assert len(read_annotations(torn, torn_tail="drop")) == 5
    with pytest.raises(UserError, match="does not exist"):
        read_annotations(tmp_path / "missing.jsonl")
    out = tmp_path / "out.jsonl"
    with pytest.raises(UserError, match="ends in a torn line 6"):
        retrack(torn, out, [build_tracker("iou")])
    assert not out.exists()


def test_retrack_refuses_a_missing_mot_folder_before_writing(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.jsonl", online("iou", detections(5)))
    with pytest.raises(UserError, match="MOT output folder '.*nowhere' does not exist; create it"):
        retrack(src, tmp_path / "b.jsonl", [build_tracker("iou")], mot=tmp_path / "nowhere" / "t.txt")
    assert not (tmp_path / "b.jsonl").exists()
