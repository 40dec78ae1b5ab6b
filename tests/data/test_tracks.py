"""The procedural tracking video: seeded, identities that re-enter, occlusion, MOT ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.data.tracks import HELDOUT_RECIPE, TEST_RECIPE, TrackRecipe, gt_mot_text, simulate, write_track_set
from tests.helpers import count_frames

SMALL = TrackRecipe(width=320, height=180, frames=90, objects=5, min_size=24, max_size=44, away_frames=(3, 12))


def test_same_seed_same_truth_other_seed_other_truth() -> None:
    assert gt_mot_text(simulate(SMALL)) == gt_mot_text(simulate(SMALL))
    other = TrackRecipe(**{**SMALL.__dict__, "seed": 8})
    assert gt_mot_text(simulate(other)) != gt_mot_text(simulate(SMALL))


def test_held_out_recipe_is_apart_from_the_test_recipe() -> None:
    assert HELDOUT_RECIPE.seed != TEST_RECIPE.seed
    assert (HELDOUT_RECIPE.width, HELDOUT_RECIPE.objects) != (TEST_RECIPE.width, TEST_RECIPE.objects)


def test_objects_cross_occlude_stop_and_come_back() -> None:
    truth = simulate(TEST_RECIPE)
    rows = [g for frame in truth.frames for g in frame]
    legs = {(g.gt_id, g.leg) for g in rows}
    assert len(legs) > len({g.gt_id for g in rows}), "some identity must leave and re-enter"
    assert any(g.visibility < 0.5 for g in rows), "some object must be occluded"
    still = 0
    for a, b in zip(truth.frames, truth.frames[1:]):
        prev = {g.gt_id: g.box for g in a}
        still += sum(1 for g in b if prev.get(g.gt_id) == g.box)
    assert still > 5, "some object must stop"
    for g in rows:
        x1, y1, x2, y2 = g.box
        assert 0 <= x1 < x2 <= TEST_RECIPE.width - 1 and 0 <= y1 < y2 <= TEST_RECIPE.height - 1


def test_write_track_set(tmp_path: Path) -> None:
    paths = write_track_set(tmp_path / "set", SMALL)
    assert count_frames(paths["video"]) == SMALL.frames
    first = paths["gt"].read_text().splitlines()[0].split(",")
    assert first[0] == "1" and first[6:8] == ["1", "1"]
    mot = pytest.importorskip("trackers.io.mot")
    assert max(mot.load_mot_file(paths["gt"])) <= SMALL.frames
