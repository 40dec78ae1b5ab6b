"""Tracker scoring: noise model, GT crossings, the comparison runner and its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_app.data.tracks import TrackRecipe, simulate
from edge_app.errors import UserError
from edge_app.eval.track import (
    NoiseConfig,
    bench_tracker,
    detector_detections,
    format_track_eval,
    gt_crossings,
    noisy_detections,
    run_track_eval,
)
from edge_app.frames.results import FrameResult

pytest.importorskip("trackers")

SMALL = TrackRecipe(width=320, height=180, frames=80, objects=4, min_size=24, max_size=44, away_frames=(3, 12), seed=11)


def test_noise_is_seeded() -> None:
    truth = simulate(SMALL)
    a, b = noisy_detections(truth), noisy_detections(truth)
    assert [[lb.box for lb in f] for f in a] == [[lb.box for lb in f] for f in b]
    c = noisy_detections(truth, NoiseConfig(seed=1))
    assert [[lb.box for lb in f] for f in a] != [[lb.box for lb in f] for f in c]


def test_gt_crossings_count_each_leg_across_the_line() -> None:
    truth = simulate(SMALL)
    x = truth.recipe.counting_line()[0]
    want = 0
    tracks: dict[tuple[int, int], list[float]] = {}
    for frame in truth.frames:
        for g in frame:
            tracks.setdefault((g.gt_id, g.leg), []).append((g.box[0] + g.box[2]) / 2 - x)
    for xs in tracks.values():
        signs = [s for s in (1 if v > 0 else -1 if v < 0 else 0 for v in xs) if s]
        want += sum(1 for p, q in zip(signs, signs[1:]) if p != q)
    got = gt_crossings(truth)
    assert sum(sum(v.values()) for v in got.values()) == want > 0


def test_run_track_eval_scores_ours_and_the_library(tmp_path: Path) -> None:
    res = run_track_eval(SMALL, trackers=("bytetrack", "iou", "trackers-bytetrack"), out_dir=tmp_path, bench=False)
    by = {s.tracker: s for s in res.scores}
    assert set(by) == {"bytetrack", "iou", "trackers-bytetrack"}
    assert by["bytetrack"].idf1 > 0.5 and 0 < by["bytetrack"].mota <= 1
    assert (tmp_path / "gt.txt").is_file() and (tmp_path / "gt_noise.bytetrack.txt").is_file()
    lines = format_track_eval(res)
    assert "MOTA" in lines[1] and "IDF1" in lines[1] and "HOTA" in lines[1]
    assert any(line.startswith("gt+noise   bytetrack") for line in lines)


def test_detector_detections_from_json_lines(tmp_path: Path) -> None:
    truth = simulate(SMALL)
    dets = noisy_detections(truth)
    path = tmp_path / "dets.jsonl"
    path.write_text("".join(json.dumps(FrameResult(i, 0.0, d).to_dict()) + "\n" for i, d in enumerate(dets)))
    back = detector_detections(path, len(truth.frames))
    assert [len(f) for f in back] == [len(f) for f in dets]
    res = run_track_eval(SMALL, detections_jsonl=path, trackers=("bytetrack",), out_dir=tmp_path / "o", bench=False)
    assert [s.detections for s in res.scores] == ["gt+noise", "detector"]


def test_bench_and_bad_recipe() -> None:
    row = bench_tracker("bytetrack", detections=20, frames=10, warmup=2)
    assert row.p50_ms > 0 and row.detections == 20
    with pytest.raises(UserError, match="tracking recipe 'x' is unknown; choose one of heldout, test"):
        run_track_eval("x")
