"""COCO and YOLO readers: good data loads at the model size, bad annotations are counted, bad input is a UserError."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.data.detection import DetectionSet, detect_format, load_detection_data, read_coco, read_yolo
from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError
from edge_app.geometry import boxes_to_frame, boxes_to_input

SPEC = InputSpec(64, 64, resize="letterbox")


def _img(path: Path, w: int = 128, h: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return path


def _coco(root: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    for i in range(4):
        _img(root / "images" / f"{i}.png")
    images = (
        images
        if images is not None
        else [{"id": i, "file_name": f"{i}.png", "width": 128, "height": 64} for i in range(4)]
    )
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root


def test_coco_reads_and_counts_bad_annotations(tmp_path: Path) -> None:
    anns = [
        {"image_id": 0, "category_id": 1, "bbox": [0, 0, 64, 32]},  # good
        {"image_id": 1, "category_id": 3, "bbox": [64, 32, 32, 16]},  # good, second class
        {"image_id": 2, "category_id": 1, "bbox": [500, 500, 10, 10]},  # outside the image
        {"image_id": 2, "category_id": 7, "bbox": [0, 0, 10, 10]},  # unknown class
        {"image_id": 3, "category_id": 1, "bbox": [100, 0, 60, 20]},  # partly outside: clipped, kept
        {"image_id": 9, "category_id": 1, "bbox": [0, 0, 10, 10]},  # image not listed
        {"image_id": 0, "category_id": 1, "bbox": [0, 0, 0, 5]},  # no area
    ]
    images = [{"id": i, "file_name": f"{i}.png", "width": 128, "height": 64} for i in range(4)]
    images.append({"id": 4, "file_name": "gone.png"})  # missing file
    _coco(tmp_path, anns, images)
    items, names, rep = read_coco(tmp_path)
    assert names == ["cat", "dog"] and len(items) == 4
    assert rep.skipped["box outside the image"] == 1
    assert rep.skipped["unknown class"] == 1
    assert rep.skipped["annotation of an image not in 'images'"] == 1
    assert rep.skipped["missing or unreadable image"] == 1
    assert rep.skipped["degenerate box (no area or not finite)"] == 1
    assert rep.skipped["box partly outside the image (clipped, kept)"] == 1
    assert "gone.png" in rep.summary()

    train, val, rep2 = load_detection_data(tmp_path, SPEC, val_fraction=0.25, seed=0)
    assert len(train) + len(val) == 4 and train.images.shape[1:] == (64, 64, 3)
    allb = {tuple(np.round(b, 1)) for ds in (train, val) for bs in ds.boxes for b in bs}
    # 128x64 letterboxed into 64x64: scale 0.5, 16 px bar on top.
    assert (0.0, 16.0, 32.0, 32.0) in allb and (32.0, 32.0, 48.0, 40.0) in allb and (50.0, 16.0, 64.0, 26.0) in allb


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "not an object"),
        ('{"images": []}', "no 'annotations' list"),
        ('{"annotations": []}', "no 'images' list"),
        ('{"images": [], "annotations": []}', "no 'categories'"),
    ],
)
def test_coco_bad_input(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "instances.json").write_text(text)
    with pytest.raises(UserError, match=match):
        read_coco(tmp_path / "instances.json")


def test_coco_nothing_usable(tmp_path: Path) -> None:
    _coco(tmp_path, [{"image_id": 0, "category_id": 5, "bbox": [0, 0, 10, 10]}])
    with pytest.raises(UserError, match="no usable box"):
        load_detection_data(tmp_path, SPEC)
    (tmp_path / "instances.json").write_text(
        json.dumps(
            {"images": [{"id": 0, "file_name": "nope.png"}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
        )
    )
    with pytest.raises(UserError, match="no usable training image"):
        load_detection_data(tmp_path, SPEC)


def _yolo(root: Path, labels: dict[str, str], names: str = "cat\ndog\n") -> Path:
    for stem in ("a", "b", "c"):
        _img(root / "images" / f"{stem}.jpg")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        (root / "labels" / f"{stem}.txt").write_text(text)
    (root / "classes.txt").write_text(names)
    return root


def test_yolo_reads_and_counts(tmp_path: Path) -> None:
    _yolo(
        tmp_path,
        {"a": "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n", "b": "5 0.5 0.5 0.1 0.1\n", "orphan": "0 0.5 0.5 0.1 0.1\n"},
    )
    items, names, rep = read_yolo(tmp_path)
    assert names == ["cat", "dog"] and len(items) == 3  # c has no label file: an image with no objects
    assert rep.skipped["unknown class"] == 1 and rep.skipped["missing or unreadable image"] == 1
    train, val, _ = load_detection_data(tmp_path, SPEC, val_fraction=0.0)
    assert len(train) == 3 and len(val) == 0
    a = train.boxes[0]
    np.testing.assert_allclose(a[0], [16, 24, 48, 40], atol=0.01)  # 128x64 image, box centre, letterboxed
    assert train.classes[0].tolist() == [0, 1] and len(train.boxes[2]) == 0


@pytest.mark.parametrize(
    "line,match",
    [
        ("0 0.5 0.5 0.5", "has 4 fields"),
        ("0 0.1 0.2 0.3 0.4 0.5 0.6", "has 7 fields"),
        ("cat 0.5 0.5 0.1 0.1", "not numbers"),
    ],
)
def test_yolo_bad_line(tmp_path: Path, line: str, match: str) -> None:
    _yolo(tmp_path, {"a": line + "\n"})
    with pytest.raises(UserError, match=match) as e:
        read_yolo(tmp_path)
    assert "a.txt" in str(e.value) and "class cx cy w h" in str(e.value)


def test_yolo_needs_names_and_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match="classes.txt"):
        read_yolo(tmp_path)
    with pytest.raises(UserError, match="neither a COCO set"):
        detect_format(tmp_path / "nothing")


def test_yolo_train_val_folders(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _img(tmp_path / "images" / split / "x.png")
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / "x.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    train, val, _ = load_detection_data(tmp_path, SPEC)
    assert len(train) == 1 and len(val) == 1


@pytest.mark.parametrize("resize", ["letterbox", "stretch", "center_crop"])
def test_box_mapping_round_trips(resize: str) -> None:
    spec = InputSpec(96, 96, resize=resize)
    boxes = np.array([[400, 200, 700, 500], [10, 300, 90, 400]], np.float32)
    back = boxes_to_frame(boxes_to_input(boxes, (720, 1280), spec), (720, 1280), spec)
    if resize == "center_crop":
        back, boxes = back[:1], boxes[:1]  # the second box lies outside the crop
    np.testing.assert_allclose(back, boxes, atol=0.5)


def test_letterbox_mapping_matches_the_host_resize() -> None:
    from edge_app.geometry import resize_to_input

    spec = InputSpec(64, 64, resize="letterbox")
    frame = np.zeros((72, 128, 3), np.uint8)
    frame[36:72, 64:128] = 255  # bottom-right quarter
    img = resize_to_input(frame, spec)
    b = boxes_to_input(np.array([[64, 36, 128, 72]]), (72, 128), spec)[0]
    ys, xs = np.nonzero(img[..., 0] > 128)
    assert (
        abs(xs.min() - b[0]) <= 1
        and abs(ys.min() - b[1]) <= 1
        and abs(xs.max() + 1 - b[2]) <= 1
        and abs(ys.max() + 1 - b[3]) <= 1
    )


def test_detection_set_validates() -> None:
    with pytest.raises(ValueError, match="class id out of range"):
        DetectionSet(np.zeros((1, 8, 8, 3), np.uint8), [np.zeros((1, 4))], [np.array([3])], ["a"])
    with pytest.raises(ValueError, match="1 images but 2"):
        DetectionSet(np.zeros((1, 8, 8, 3), np.uint8), [np.zeros((0, 4))] * 2, [np.zeros(0)] * 2, ["a"])
