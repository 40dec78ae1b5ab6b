"""Label / FrameResult: validation, and JSON lines that round-trip (old files byte-equal, new keys only when set)."""

from __future__ import annotations

import json

import pytest

from edge_app.frames.results import FrameResult, Label

OLD_LINE = (
    '{"frame": 3, "capture_time": 12.5, "labels": [{"class_id": 1, "class": "circle", "score": 0.9, '
    '"box": [1.0, 2.0, 30.0, 40.0]}], "timings_ms": {"inference": 1.25}}'
)


def test_a_line_written_before_track_and_source_ids_round_trips_byte_equal() -> None:
    r = FrameResult.from_dict(json.loads(OLD_LINE))
    assert r.source_id is None and r.media_time is None and r.labels[0].track_id is None
    assert json.dumps(r.to_dict()) == OLD_LINE


def test_new_fields_are_written_and_read_back() -> None:
    r = FrameResult(
        7, 1.0, [Label(2, "car", 0.5, (0, 0, 4, 4), track_id=11)], {"inference": 2.0}, source_id=1, media_time=0.25
    )
    d = r.to_dict()
    assert list(d)[:3] == ["source_id", "frame", "media_time"] and d["labels"][0]["track_id"] == 11
    back = FrameResult.from_dict(json.loads(json.dumps(d)))
    assert back == r


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Label(0, "a", 1.5), r"score must be in \[0, 1\], got 1.5"),
        (lambda: Label(0, "a", 0.5, (5, 0, 1, 1)), r"box must be x1,y1,x2,y2"),
        (lambda: Label(0, "a", 0.5, track_id=-1), r"track id must be >= 0, got -1"),
        (lambda: FrameResult(-1, 0.0), r"frame index must be >= 0, got -1"),
        (lambda: FrameResult(0, 0.0, source_id=-2), r"source id must be >= 0, got -2"),
    ],
)
def test_bad_values_are_refused_on_creation(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        make()
