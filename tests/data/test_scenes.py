"""Built-in detection scenes: seeded, boxes valid, the variety the detector must learn from, held-out guards."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.data.scenes import (
    CLASSES,
    HELDOUT_SEED,
    SceneConfig,
    heldout_video_frames,
    make_scenes,
    render_scene,
    scene_rng,
)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(60, SceneConfig(96, 128), seed=5, split="train")


def test_same_seed_same_scene() -> None:
    a = render_scene(SceneConfig(64, 64), scene_rng(1, "train", 7))
    b = render_scene(SceneConfig(64, 64), scene_rng(1, "train", 7))
    c = render_scene(SceneConfig(64, 64), scene_rng(1, "val", 7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])


def test_boxes_are_valid(scenes) -> None:
    assert scenes.images.shape == (60, 96, 128, 3) and scenes.names == list(CLASSES)
    for b, c in zip(scenes.boxes, scenes.classes):
        assert len(b) == len(c)
        if len(b):
            assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 128).all() and (b[:, 3] <= 96).all()
            assert (b[:, 2] - b[:, 0] >= 1).all() and (b[:, 3] - b[:, 1] >= 1).all()
            assert c.min() >= 0 and c.max() < len(CLASSES)


def test_scenes_vary(scenes) -> None:
    counts = np.array([len(b) for b in scenes.boxes])
    assert counts.max() >= 4  # several objects per image
    assert (counts == 0).any()  # empty images
    sides = np.concatenate([np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) for b in scenes.boxes if len(b)])
    assert sides.min() < 15 and sides.max() > 50  # many scales
    edge = np.concatenate(
        [(b[:, 0] <= 0.5) | (b[:, 1] <= 0.5) | (b[:, 2] >= 127.5) | (b[:, 3] >= 95.5) for b in scenes.boxes if len(b)]
    )
    assert edge.any()  # truncated at the edges
    all_c = np.concatenate(scenes.classes)
    assert set(all_c.tolist()) == set(range(len(CLASSES)))
    means = scenes.images.reshape(60, -1, 3).mean(1)
    assert means.std(0).min() > 10  # backgrounds differ in colour


def test_objects_are_visible(scenes) -> None:
    """Each box holds drawn pixels: its content differs from a same-size ring around it in most cases."""
    diffs = []
    for img, boxes in zip(scenes.images[:20], scenes.boxes[:20]):
        for x1, y1, x2, y2 in boxes.astype(int):
            if x2 - x1 < 6 or y2 - y1 < 6:
                continue
            inner = (
                img[y1 + (y2 - y1) // 3 : y2 - (y2 - y1) // 3, x1 + (x2 - x1) // 3 : x2 - (x2 - x1) // 3]
                .reshape(-1, 3)
                .mean(0)
            )
            ring = np.concatenate(
                [img[max(0, y1 - 3) : y1, x1:x2].reshape(-1, 3), img[y2 : y2 + 3, x1:x2].reshape(-1, 3)]
            )
            if len(ring):
                diffs.append(np.abs(inner - ring.mean(0)).max())
    assert np.median(diffs) > 20


def test_test_split_only_with_heldout_seed() -> None:
    with pytest.raises(ValueError, match="HELDOUT_SEED"):
        make_scenes(2, SceneConfig(64, 64), seed=0, split="test")
    held = make_scenes(2, SceneConfig(64, 64), seed=HELDOUT_SEED, split="test")
    train = make_scenes(2, SceneConfig(64, 64), seed=HELDOUT_SEED, split="train")
    assert not np.array_equal(held.images, train.images)


def test_heldout_video_frames() -> None:
    frames, boxes, classes = heldout_video_frames(n=2, every=3)
    assert len(frames) == 2 and frames[0].shape == (720, 1280, 3)
    assert all(len(b) == len(c) == 7 for b, c in zip(boxes, classes))
    assert all((b[:, 2] <= 1280).all() and (b[:, 3] <= 720).all() for b in boxes)
