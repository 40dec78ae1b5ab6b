from __future__ import annotations

import json

import cv2
import numpy as np

from edge_app.data.synthetic import (
    CLASSES,
    SHAPES,
    SyntheticConfig,
    SyntheticScene,
    VideoConfig,
    render_crop,
    write_dataset,
    write_video,
)


def test_dataset_layout_is_an_image_folder_and_cached(tmp_path) -> None:
    cfg = SyntheticConfig(image_size=40, train_per_class=3, val_per_class=2)
    root = write_dataset(tmp_path / "d", cfg)
    for split, n in (("train", 3), ("val", 2)):
        for c in CLASSES:
            files = sorted((root / split / c).glob("*.png"))
            assert len(files) == n
            assert cv2.imread(str(files[0])).shape == (40, 40, 3)
    stamp = (root / "dataset.json").stat().st_mtime_ns
    first = (root / "train" / "star" / "00000.png").stat().st_mtime_ns
    write_dataset(root, cfg)  # same config: nothing rewritten
    assert (root / "train" / "star" / "00000.png").stat().st_mtime_ns == first
    assert (root / "dataset.json").stat().st_mtime_ns == stamp


def test_rendering_is_deterministic_and_classes_differ() -> None:
    cfg = SyntheticConfig(image_size=48)
    a = render_crop("star", cfg, np.random.default_rng([1, 2]))
    b = render_crop("star", cfg, np.random.default_rng([1, 2]))
    c = render_crop("star", cfg, np.random.default_rng([1, 3]))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(SHAPES) >= 5 and CLASSES[0] == "background"


def test_video_and_ground_truth(tmp_path) -> None:
    cfg = VideoConfig(width=200, height=120, fps=12.5, frames=9, objects=3, min_size=30, max_size=40)
    video, truth = write_video(tmp_path / "v.mp4", cfg)
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 9
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 12.5) < 1e-3
    lines = [json.loads(s) for s in truth.read_text().splitlines()]
    assert [ln["frame"] for ln in lines] == list(range(9))
    for obj in lines[0]["objects"]:
        x1, y1, x2, y2 = obj["box"]
        assert obj["class"] in SHAPES and 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 120


def test_scene_boxes_cover_the_drawn_object() -> None:
    cfg = VideoConfig(width=320, height=240, frames=1, objects=1, min_size=80, max_size=80)
    frame, truth = SyntheticScene(cfg).next()
    x1, y1, x2, y2 = truth[0]["box"]
    assert 55 <= x2 - x1 <= 85 and 55 <= y2 - y1 <= 85
