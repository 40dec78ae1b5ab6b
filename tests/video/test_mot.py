"""MOTChallenge text sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.errors import UserError
from edge_app.frames.results import FrameResult, Label
from edge_app.video.mot import MotSink, write_mot


def test_rows_are_mot_format_from_frame_1_with_tracked_labels_only(tmp_path: Path) -> None:
    results = [
        FrameResult(0, 0.0, [Label(0, "a", 0.91, (10, 20, 50, 80), 3), Label(0, "a", 0.4, (0, 0, 5, 5))]),
        FrameResult(1, 0.0, [Label(1, "b", 0.5, None), Label(0, "a", 0.9, (12, 20, 52, 80), 3)]).to_dict(),
    ]
    path = write_mot(tmp_path / "t.txt", results)
    assert path.read_text().splitlines() == [
        "1,3,10.00,20.00,40.00,60.00,0.91000,-1,-1,-1",
        "2,3,12.00,20.00,40.00,60.00,0.90000,-1,-1,-1",
    ]


def test_the_trackers_loader_reads_it(tmp_path: Path) -> None:
    mot = pytest.importorskip("trackers.io.mot")
    path = write_mot(tmp_path / "t.txt", [FrameResult(4, 0.0, [Label(0, "a", 0.9, (1, 2, 11, 22), 1)])])
    data = mot.load_mot_file(path)
    assert list(data) == [5] and data[5].boxes.tolist() == [[1.0, 2.0, 10.0, 20.0]]


def test_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"MOT output folder '.*missing' does not exist; create it or choose a path"):
        MotSink(tmp_path / "missing" / "t.txt")
    with pytest.raises(UserError, match="is a folder; give a file path"):
        MotSink(tmp_path)


def test_one_sequence_per_file(tmp_path: Path) -> None:
    with MotSink(tmp_path / "t.txt") as sink:
        sink.write(None, FrameResult(0, 0.0, [], source_id=0))
        with pytest.raises(UserError, match="holds one sequence but results come from sources 0 and 1"):
            sink.write(None, FrameResult(0, 0.0, [], source_id=1))
