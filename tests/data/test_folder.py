from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_app.data.folder import augment, load_image_folder, read_image
from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError

SPEC = InputSpec(height=32, width=32)


def make_folder(root, classes=("a", "b"), n=5, size=(40, 50)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / c / f"{i}.jpg"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return root


def test_random_split_when_no_val_folder(tmp_path) -> None:
    root = make_folder(tmp_path / "ds", n=10)
    train, val, rep = load_image_folder(root, SPEC, val_fraction=0.2)
    assert rep.classes == ["a", "b"] and rep.split == "random"
    assert len(train) == 16 and len(val) == 4
    assert train.images.shape == (16, 32, 32, 3) and train.images.dtype == np.uint8
    assert sorted(np.bincount(val.labels).tolist()) == [2, 2]


def test_train_val_folders_are_used(tmp_path) -> None:
    make_folder(tmp_path / "ds" / "train", n=4)
    make_folder(tmp_path / "ds" / "val", n=2)
    train, val, rep = load_image_folder(tmp_path / "ds", SPEC)
    assert (len(train), len(val), rep.split) == (8, 4, "folders")


def test_corrupt_images_are_skipped_and_counted(tmp_path) -> None:
    root = make_folder(tmp_path / "ds", n=6)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (root / "b" / "empty.png").write_bytes(b"")
    good = (root / "a" / "0.jpg").read_bytes()
    (root / "b" / "half.jpg").write_bytes(good[: len(good) // 3])
    train, val, rep = load_image_folder(root, SPEC)
    assert len(train) + len(val) >= 12
    assert any("broken.jpg" in s for s in rep.skipped) and any("empty.png" in s for s in rep.skipped)
    assert "skipped" in rep.summary()
    assert read_image(root / "a" / "broken.jpg") is None


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "has no class folders"),
        (lambda p: make_folder(p, classes=("only",)), "only one class"),
        (lambda p: [(p / c).mkdir(parents=True) for c in ("a", "b")], "no images"),
    ],
)
def test_bad_dataset_folders(tmp_path, setup, match) -> None:
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(UserError, match=match):
        load_image_folder(root, SPEC)


def test_class_with_only_unreadable_images(tmp_path) -> None:
    root = make_folder(tmp_path / "ds", classes=("a",), n=4)
    (root / "b").mkdir()
    (root / "b" / "x.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="'b'.*no readable training images"):
        load_image_folder(root, SPEC)


def test_augment_keeps_shape_and_dtype(rng) -> None:
    batch = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    out = augment(batch, rng)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert not np.array_equal(out, batch)
