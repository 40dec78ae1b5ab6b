"""`run.py track`: re-track stored boxes without an engine; tracking flags shared with live/annotate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edge_app.cli import post_label, track
from edge_app.errors import UserError
from edge_app.frames.results import FrameResult, Label


def _annotations(path: Path, frames: int = 12) -> Path:
    """Two boxes moving right by 10 px a frame, as detect mode would have written them."""
    lines = []
    for i in range(frames):
        labels = [
            Label(0, "car", 0.9, (10.0 + 10 * i, 20.0, 40.0 + 10 * i, 50.0)),
            Label(1, "person", 0.8, (10.0 + 10 * i, 120.0, 30.0 + 10 * i, 170.0)),
        ]
        lines.append(json.dumps(FrameResult(i, float(i), labels).to_dict()))
    path.write_text("\n".join(lines) + "\n")
    return path


def _parse(*args: str) -> argparse.Namespace:
    return track.get_args_parser().parse_args(list(args))


def test_track_writes_ids_counts_and_mot(tmp_path: Path) -> None:
    src = _annotations(tmp_path / "in.jsonl")
    out, mot = tmp_path / "out.jsonl", tmp_path / "mot.txt"
    a = _parse(str(src), "--out", str(out), "--mot", str(mot), "--line", "gate=80,0,80,200", "--track-min-hits", "1")
    assert track.main(a) == 0
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    ids = {(lb["class"], lb["track_id"]) for ln in lines for lb in ln["labels"] if "track_id" in lb}
    assert len(ids) == 2  # one stable ID per object over all frames
    assert lines[-1]["counts"]["gate"]["in"] or lines[-1]["counts"]["gate"]["out"]  # both crossed x=80
    rows = mot.read_text().splitlines()
    assert rows and rows[0].split(",")[0] == "1"  # MOTChallenge frames count from 1
    before = src.read_text()
    with pytest.raises(UserError, match=r"--out '.*out.jsonl' already exists; choose a new file or pass --overwrite"):
        track.main(a)
    assert src.read_text() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--track-min-hits", "0"), r"^--track-min-hits 0 must be at least 1 frame"),
        (("--line", "1,2,3"), r"--line"),
        (("--zone", "0,0,10,10"), r"--zone"),
    ],
)
def test_bad_tracking_flags_are_one_sentence_naming_the_flag(tmp_path: Path, extra: tuple, message: str) -> None:
    src = _annotations(tmp_path / "in.jsonl")
    with pytest.raises(UserError, match=message):
        track.main(_parse(str(src), "--out", str(tmp_path / "o.jsonl"), *extra))
    assert not (tmp_path / "o.jsonl").exists()


def test_loop_commands_refuse_tracking_whole_frame_labels_and_counting_without_a_tracker() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="classify")
    post_label.add_post_label_args(p)
    with pytest.raises(UserError, match=r"--track needs boxes, but classify mode labels whole frames"):
        post_label.post_label_from_args(p.parse_args(["--track", "bytetrack"]), task="classify")
    with pytest.raises(UserError, match=r"--line counts and writes track IDs; add --track bytetrack"):
        post_label.post_label_from_args(p.parse_args(["--line", "0,0,5,5"]), task="detect")
    with pytest.raises(UserError, match=r"--line .* outside"):
        post_label.post_label_from_args(
            p.parse_args(["--mode", "detect", "--track", "iou", "--line", "0,0,5000,5"]), "detect", (640, 480)
        )
    ok = post_label.post_label_from_args(p.parse_args(["--mode", "detect", "--track", "iou"]), "detect", (640, 480))
    assert [type(s).__name__ for s in ok.steps] == ["IouTracker"] and ok.settings["tracker"] == "iou"
