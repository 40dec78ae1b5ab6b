"""annotate of several videos in one batched loop: the same outputs as one file at a time, each file its own."""

from __future__ import annotations

import json
from pathlib import Path

from edge_app.annotate.video import annotate_config, annotate_video, annotate_videos
from edge_app.cli import main as cli_main
from edge_app.frames.labellers import make_labeller
from tests.frames.fakes import FakeEngine
from tests.helpers import count_frames, write_tiny_video


def _labels(path: Path) -> list[tuple[int, list]]:
    return [(d["frame"], d["labels"]) for d in map(json.loads, path.read_text().splitlines())]


def test_files_labelled_together_match_files_labelled_alone(tmp_path: Path) -> None:
    clips = [write_tiny_video(tmp_path / f"c{i}.mp4", frames=n, size=(96, 64)) for i, n in enumerate((14, 9, 20))]
    alone = [annotate_video(make_labeller(FakeEngine()), c, tmp_path / f"a{i}.mp4", tmp_path / f"a{i}.jsonl",
                            annotate_config(progress=False, batch=4)) for i, c in enumerate(clips)]  # fmt: skip
    eng = FakeEngine()
    jobs = [(c, tmp_path / f"b{i}.mp4", tmp_path / f"b{i}.jsonl") for i, c in enumerate(clips)]
    together = list(annotate_videos(make_labeller(eng), jobs, annotate_config(progress=False, batch=4), at_once=3))
    assert [r.frames_written for r in together] == [r.frames_written for r in alone] == [14, 9, 20]
    for i in range(3):
        assert _labels(tmp_path / f"b{i}.jsonl") == _labels(tmp_path / f"a{i}.jsonl")  # no source_id, same labels
        assert count_frames(tmp_path / f"b{i}.mp4") == together[i].frames_written
        assert (tmp_path / f"b{i}.run.json").is_file()
    assert max(eng.calls) == 4 and sum(eng.calls) == 43  # batches mixed from the files


def test_max_frames_and_resume_hold_per_file(tmp_path: Path) -> None:
    clips = [write_tiny_video(tmp_path / f"c{i}.mp4", frames=12, size=(96, 64)) for i in range(2)]
    jobs = [(c, tmp_path / f"o{i}.mp4", tmp_path / f"o{i}.jsonl") for i, c in enumerate(clips)]
    first = list(annotate_videos(make_labeller(FakeEngine()), jobs, annotate_config(progress=False, max_frames=5)))
    assert [r.frames_written for r in first] == [5, 5]
    again = list(annotate_videos(make_labeller(FakeEngine()), jobs, annotate_config(progress=False), resume=True))
    assert [(r.frames_restored, r.frames_written) for r in again] == [(5, 12), (5, 12)]
    assert [f for f, _ in _labels(tmp_path / "o1.jsonl")] == list(range(12))


def test_the_cli_labels_a_folder_of_videos_in_one_loop(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    for i in range(3):
        write_tiny_video(tmp_path / "in" / "sub" / f"v{i}.mp4", frames=6, size=(96, 64))
    out = tmp_path / "out"
    code = cli_main(["annotate", str(tmp_path / "in"), "--engine", str(tiny_engine), "--out", str(out),
                     "--no-progress", "--files-at-once", "2", "--backend", "onnxruntime"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["v0.jsonl", "v1.jsonl", "v2.jsonl"]
    assert all(len(p.read_text().splitlines()) == 6 for p in out.glob("*.jsonl"))
    assert "total: 3 files, 18 frames read, 18 written" in printed
