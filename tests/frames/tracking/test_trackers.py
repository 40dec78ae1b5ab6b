"""Trackers: stable IDs through occlusion, per-source state, min-hits hiding, settings and flags."""

from __future__ import annotations

import argparse

import pytest

from edge_app.errors import FieldError
from edge_app.frames.results import Label
from edge_app.frames.tracking import (
    TrackerConfig,
    build_tracker,
    cli_options,
    config_from_options,
    get_tracker,
    tracker_defaults,
    tracker_names,
)
from edge_app.frames.tracking.base import flag_names

TRACKERS = ("bytetrack", "iou")


def box(x: float, y: float = 100.0, s: float = 40.0) -> tuple[float, float, float, float]:
    return (x, y, x + s, y + s)


def ids(labels: list[Label]) -> list[int | None]:
    return [lb.track_id for lb in labels]


def test_registry_has_both_trackers() -> None:
    assert {"bytetrack", "iou"} <= set(tracker_names())
    with pytest.raises(FieldError, match="tracker 'nope' is unknown; choose one of bytetrack, iou"):
        get_tracker("nope")


def test_iou_tracker_has_jetson_inference_defaults() -> None:
    cfg = tracker_defaults("iou")
    assert (cfg.min_hits, cfg.buffer, cfg.match_iou) == (3, 15, 0.5)


@pytest.mark.parametrize("name", TRACKERS)
def test_min_hits_hides_the_id_until_seen_long_enough(name: str) -> None:
    tr = build_tracker(name, min_hits=3)
    seen = [ids(tr.update(0, f, [Label(0, "a", 0.9, box(10 + 2 * f))]))[0] for f in range(5)]
    assert seen == [None, None, 1, 1, 1]


@pytest.mark.parametrize("name", TRACKERS)
def test_a_one_frame_false_positive_gets_no_id(name: str) -> None:
    tr = build_tracker(name)
    out = [tr.update(0, 0, [Label(0, "a", 0.9, box(10)), Label(0, "a", 0.9, box(300))])]
    for f in range(1, 5):
        out.append(tr.update(0, f, [Label(0, "a", 0.9, box(10 + 2 * f))]))
    assert all(lb.track_id is None for lb in out[0])
    assert [ids(o) for o in out[1:]][-1] == [1]


@pytest.mark.parametrize("name", TRACKERS)
def test_boxless_labels_pass_through(name: str) -> None:
    tr = build_tracker(name)
    whole = Label(3, "scene", 0.7)
    out = tr.update(0, 0, [whole])
    assert out == [whole]


def test_bytetrack_keeps_the_id_of_a_moving_object_through_a_short_occlusion() -> None:
    tr = build_tracker("bytetrack")
    got = []
    for f in range(30):
        labels = [Label(1, "b", 0.9, box(400 - 4 * f, 100))]  # a second object, always seen
        if not 10 <= f < 16:  # object a hidden for 6 frames while moving 5 px per frame
            labels.append(Label(0, "a", 0.9, box(20 + 5 * f, 100)))
        got.append({lb.name: lb.track_id for lb in tr.update(0, f, labels)})
    a_ids = {g["a"] for g in got[1:] if "a" in g}
    assert a_ids == {got[1]["a"]}
    assert {g["b"] for g in got[1:]} == {got[1]["b"]}


def test_bytetrack_second_stage_keeps_ids_of_low_score_occluded_boxes() -> None:
    """Two objects cross; the one behind scores low while covered: its ID must survive, the two must not swap."""
    tr = build_tracker("bytetrack")
    first: dict[str, int] = {}
    for f in range(40):
        xa, xb = 50 + 6 * f, 290 - 6 * f
        score_b = 0.3 if abs(xa - xb) < 40 else 0.9
        out = tr.update(0, f, [Label(0, "a", 0.9, box(xa)), Label(0, "a", score_b, box(xb, 108))])
        got = {("front" if i == 0 else "back"): lb.track_id for i, lb in enumerate(out)}
        if f >= 1:
            for k, v in got.items():
                assert first.setdefault(k, v) == v, f"frame {f}: {k} changed ID"


def test_class_aware_matching_does_not_give_one_class_the_id_of_another() -> None:
    aware, agnostic = build_tracker("bytetrack"), build_tracker("bytetrack", class_aware=False)
    for f in range(3):
        aware.update(0, f, [Label(0, "a", 0.9, box(10))])
        agnostic.update(0, f, [Label(0, "a", 0.9, box(10))])
    assert ids(aware.update(0, 3, [Label(1, "b", 0.9, box(10))])) == [None]
    assert ids(agnostic.update(0, 3, [Label(1, "b", 0.9, box(10))])) == [1]


@pytest.mark.parametrize("name", TRACKERS)
def test_reset_starts_the_source_again(name: str) -> None:
    tr = build_tracker(name, min_hits=1)
    for f in range(3):
        tr.update(0, f, [Label(0, "a", 0.9, box(10)), Label(0, "a", 0.9, box(200))])
    tr.reset(0)
    assert ids(tr.update(0, 0, [Label(0, "a", 0.9, box(200))])) == [1]


@pytest.mark.parametrize("name", TRACKERS)
def test_sources_are_independent(name: str) -> None:
    def frames(src: int) -> list[list[Label]]:
        return [
            [Label(0, "a", 0.9, box(10 + 3 * f + 100 * src)), Label(0, "a", 0.9, box(300 - 2 * f))] for f in range(12)
        ]

    single = build_tracker(name)
    alone = [ids(single.update(1, f, lb)) for f, lb in enumerate(frames(1))]
    tr = build_tracker(name)
    mixed = []
    for f in range(12):  # interleaved with another source whose objects sit where source 1's do
        tr.update(0, f, frames(0)[f])
        mixed.append(ids(tr.update(1, f, frames(1)[f])))
    assert mixed == alone


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": 1.5}, "activation 1.5 must be a score in"),
        ({"low_score": 0.7, "high_score": 0.5}, "low_score 0.7 must not exceed high_score 0.5"),
        ({"buffer": -1}, "buffer -1 must be at least 0 frames"),
        ({"match_iou": 0.0}, r"match_iou 0 must be an overlap in \(0, 1\]"),
        ({"min_hits": 0}, "min_hits 0 must be at least 1 frame"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        TrackerConfig(**kwargs)


def test_cli_options_build_flags_and_reword_errors() -> None:
    parser = argparse.ArgumentParser()
    for opt in cli_options():
        parser.add_argument(opt.flag, **opt.argparse_kwargs())
    ns = parser.parse_args(["--track", "iou", "--track-buffer", "5", "--track-any-class"])
    cfg = config_from_options(ns.track, vars(ns))
    assert (cfg.buffer, cfg.class_aware, cfg.min_hits) == (5, False, 3)  # min_hits: the iou tracker's default
    bad = parser.parse_args(["--track", "bytetrack", "--track-min-hits", "0"])
    with pytest.raises(FieldError) as err:
        config_from_options(bad.track, vars(bad))
    assert str(err.value.reworded(flag_names())) == "--track-min-hits 0 must be at least 1 frame"
