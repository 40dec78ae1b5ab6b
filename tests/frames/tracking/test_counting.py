"""Line and zone counting from track IDs; parsing and frame checks of --line / --zone."""

from __future__ import annotations

import pytest

from edge_app.errors import FieldError
from edge_app.frames.results import Label
from edge_app.frames.tracking import LineCounter, ZoneCounter, merge_extras, parse_line, parse_zone, run_steps
from edge_app.frames.tracking.counting import build_counters


def at(cx: float, cy: float, tid: int | None = 1, name: str = "car", s: float = 20.0) -> Label:
    return Label(0, name, 0.9, (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), tid)


def run(counter: LineCounter | ZoneCounter, xs: list[float], y: float = 50.0, tid: int = 1) -> None:
    for f, x in enumerate(xs):
        counter.update(0, f, [at(x, y, tid)])


def test_line_crossing_counts_once_despite_jitter_on_the_line() -> None:
    line = LineCounter(parse_line("door=100,0,100,99"))  # top to bottom: "in" is right -> left
    run(line, [60, 80, 97, 103, 98, 102, 99, 101, 100, 97, 103, 120, 140])
    assert line.counts(0) == {"in": {}, "out": {"car": 1}}


def test_crossing_back_counts_the_other_way_and_other_tracks_count_too() -> None:
    line = LineCounter(parse_line("door=100,0,100,99"))
    run(line, [60, 80, 120, 140, 120, 80, 60])
    run(line, [150, 130, 90, 70], tid=2)
    assert line.counts(0) == {"in": {"car": 2}, "out": {"car": 1}}


def test_passing_beside_the_segment_is_no_crossing() -> None:
    line = LineCounter(parse_line("short=100,0,100,40"))
    run(line, [60, 80, 120, 140], y=80)
    assert line.counts(0) == {"in": {}, "out": {}}


def test_untracked_labels_are_not_counted_and_sources_count_apart() -> None:
    line = LineCounter(parse_line("100,0,100,99"))
    assert line.name == "line1"
    for f, x in enumerate([60, 140]):
        line.update(0, f, [at(x, 50, None)])
        line.update(1, f, [at(x, 50, 1)])
    assert line.counts(0)["out"] == {} and line.counts(1)["out"] == {"car": 1}
    line.reset(1)
    assert line.counts(1) == {"in": {}, "out": {}}


def test_zone_occupancy_per_frame_and_entries() -> None:
    zone = ZoneCounter(parse_zone("dock=100,0,199,0,199,99,100,99"))
    path = [50, 90, 150, 160, 150, 101, 99, 101, 150, 250]  # in, jitter at the edge (no re-entry), out
    per_frame = []
    for f, x in enumerate(path):
        zone.update(0, f, [at(x, 50, 1), at(150, 50, 2, "bus")])  # the bus sits inside all along
        per_frame.append(zone.counts(0)["inside"])
    assert per_frame[0] == {"bus": 1}
    assert per_frame[3] == {"bus": 1, "car": 1}
    assert per_frame[-1] == {"bus": 1}
    assert zone.counts(0)["entered"] == {"bus": 1, "car": 1}


def test_counts_land_in_the_frame_extra_of_every_counter() -> None:
    steps = build_counters(["a=10,0,10,99"], ["z=0,0,50,0,50,50"])
    labels, extra = run_steps(steps, 0, 0, [at(30, 20)])
    assert labels == [at(30, 20)]
    assert set(extra["counts"]) == {"a", "z"}
    assert merge_extras(steps, 0) == extra


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("door=1,2,3", "line 'door=1,2,3' has 3 numbers; give name=x1,y1,x2,y2"),
        ("door=a,b,c,d", "line 'door=a,b,c,d' must be numbers in frame pixels"),
        ("door=5,5,5,5", "line 'door' has two equal points"),
        ("bad name=1,2,3,4", "has a bad name"),
    ],
)
def test_bad_lines_are_one_sentence(text: str, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        parse_line(text)


def test_a_line_outside_the_frame_is_refused() -> None:
    spec = parse_line("door=100,300,1400,300")
    spec.check_frame(1920, 1080)
    with pytest.raises(
        FieldError,
        match=r"line 'door' point 1400,300 is outside the 1280x720 frame; give frame pixels with x in 0-1279",
    ):
        spec.check_frame(1280, 720)


def test_zone_errors() -> None:
    with pytest.raises(FieldError, match="zone 'z' has 2 points; give at least 3 points"):
        parse_zone("z=0,0,10,10")
    with pytest.raises(FieldError, match="has 5 numbers; give x,y pairs"):
        parse_zone("z=0,0,10,10,5")
    with pytest.raises(FieldError, match="zone 'z' point 0,900 is outside the 640x480 frame"):
        parse_zone("z=0,0,10,10,0,900").check_frame(640, 480)
    with pytest.raises(FieldError, match="names two lines or zones"):
        build_counters(["a=0,0,9,9"], ["a=0,0,9,0,9,9"])
