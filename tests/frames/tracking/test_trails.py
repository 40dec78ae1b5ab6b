"""Track and count annotators draw IDs, trails, lines and counts."""

from __future__ import annotations

import numpy as np

from edge_app.frames.results import FrameResult, Label
from edge_app.frames.tracking import parse_line, parse_zone
from edge_app.frames.tracking.trails import CountAnnotator, TrackAnnotator


def test_track_annotator_draws_ids_and_trails_per_source() -> None:
    ann = TrackAnnotator(trail_length=5)
    frame = np.zeros((240, 320, 3), np.uint8)
    for f in range(8):
        r = FrameResult(
            f, 0.0, [Label(0, "a", 0.9, (10 + 5 * f, 50, 50 + 5 * f, 90), 7), Label(0, "a", 0.9, (200, 50, 240, 90))]
        )
        ann.annotate(frame, r)
    assert frame.any()
    assert len(ann._trails[(0, 7)]) == 5
    ann.reset(0)
    assert not ann._trails


def test_count_annotator_shows_counts() -> None:
    ann = CountAnnotator([parse_line("door=10,0,10,99")], [parse_zone("dock=0,0,50,0,50,50")])
    r = FrameResult(
        0,
        0.0,
        [],
        extra={
            "counts": {
                "door": {"in": {"a": 2}, "out": {"a": 1, "b": 1}},
                "dock": {"inside": {"a": 1}, "entered": {"a": 3}},
            }
        },
    )
    assert ann.text_lines(r) == ["door in 2 out 2", "dock inside 1 entered 3"]
    frame = np.zeros((120, 160, 3), np.uint8)
    assert ann.annotate(frame, r).any()
