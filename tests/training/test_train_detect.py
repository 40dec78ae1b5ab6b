"""Detector training: targets, losses, metrics, a tiny run with checkpoint/resume/metrics, config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_app.errors import UserError
from edge_app.training import detect_metrics as dm
from edge_app.training.detect import DetectConfig, train_detector
from edge_app.training.detect_loss import focal_loss, make_targets, reg_l1


def test_targets_put_a_peak_at_each_centre() -> None:
    boxes = [np.array([[8, 8, 24, 40], [40, 0, 64, 12]], np.float32)]
    t = make_targets(boxes, [np.array([1, 0])], num_classes=2, out_h=16, out_w=16)
    assert t["heat"].shape == (1, 2, 16, 16) and t["heat"].max() == 1.0
    assert t["heat"][0, 1, 6, 4] == 1.0  # centre (16, 24) px -> cell (4, 6) at stride 4
    assert t["heat"][0, 0, 1, 13] == 1.0  # centre (52, 6) px -> cell (13, 1)
    assert t["ind"][0, 0] == 6 * 16 + 4 and t["mask"][0].sum() == 2
    np.testing.assert_allclose(t["size"][0, 0], [4, 8])
    np.testing.assert_allclose(t["offset"][0, 1], [0.0, 0.5])


def test_losses_reward_the_right_answer() -> None:
    t = make_targets([np.array([[8, 8, 24, 40]], np.float32)], [np.array([0])], 1, 16, 16)
    target = torch.from_numpy(t["heat"])
    good = torch.where(target == 1, torch.tensor(6.0), torch.tensor(-6.0))
    bad = -good
    assert focal_loss(good, target) < 0.1 < focal_loss(bad, target)
    size = torch.zeros(1, 2, 16, 16)
    size[0, :, 6, 4] = torch.tensor([4.0, 8.0])
    ind, st, mask = (torch.from_numpy(t[k]) for k in ("ind", "size", "mask"))
    assert reg_l1(size, ind, st, mask) == 0
    assert reg_l1(size + 1, ind, st, mask) == pytest.approx(1.0)


def test_metrics_perfect_empty_and_counts() -> None:
    gt_b = [np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32), np.zeros((0, 4), np.float32)]
    gt_c = [np.array([0, 1]), np.zeros(0, np.int64)]
    perfect = [np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 40, 40, 0.8, 1]], np.float32), np.zeros((0, 6), np.float32)]
    acc = dm.evaluate_dets(perfect, gt_b, gt_c, ["a", "b"], threshold=0.5)
    assert acc.map50 == pytest.approx(1.0) and acc.map50_95 == pytest.approx(1.0)
    assert acc.precision == 1.0 and acc.recall == 1.0
    wrong_class = [np.array([[0, 0, 10, 10, 0.9, 1]], np.float32), np.array([[0, 0, 5, 5, 0.7, 0]], np.float32)]
    assert dm.match_counts(wrong_class, gt_b, gt_c, 0.5) == (0, 2, 2)
    assert dm.evaluate_dets([np.zeros((0, 6))] * 2, gt_b, gt_c, ["a", "b"]).map50 == 0.0
    shifted = [np.array([[0, 0, 10, 10, 0.9, 0], [30, 30, 50, 50, 0.8, 1]], np.float32), np.zeros((0, 6), np.float32)]
    acc = dm.evaluate_dets(shifted, gt_b, gt_c, ["a", "b"])
    assert acc.map50 == pytest.approx(0.5)  # class b's box has IoU 1/7
    assert dm.best_threshold(perfect, gt_b, gt_c) >= 0.1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("det_run")
    cfg = DetectConfig(
        img=64,
        width=8,
        base_width=8,
        epochs=1,
        batch=8,
        scenes=24,
        val_scenes=8,
        out=str(out / "run"),
        device="cpu",
        threads=1,
    )
    import os

    cwd = os.getcwd()
    os.chdir(out)  # the scene cache goes to ./data/scenes
    try:
        r = train_detector(cfg)
    finally:
        os.chdir(cwd)
    return r, out, cfg


def test_tiny_training_writes_checkpoint_and_metrics(tiny_run) -> None:
    from edge_app.models.checkpoint import load_checkpoint, model_from_checkpoint

    r, out, _ = tiny_run
    assert Path(r.best).is_file() and Path(r.last).is_file()
    assert (Path(r.out) / "metrics.csv").is_file() and (Path(r.out) / "metrics.png").is_file()
    assert len(r.history) == 1 and 0.0 <= r.best_map50 <= 1.0 and 0 < r.threshold < 1
    ckpt = load_checkpoint(r.last)
    assert ckpt["task"] == "detect" and ckpt["labels"] == ["circle", "square", "triangle", "star", "cross"]
    assert any(k.startswith("backbone.layer4.") for k in ckpt["model"])
    net, spec, labels = model_from_checkpoint(ckpt)  # the dispatch the PyTorch backend goes through
    assert (spec.height, spec.resize) == (64, "letterbox")
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 100, 6)
    assert list((out / "data" / "scenes").glob("train-*.npz"))  # cached for the next run


def test_resume_continues(tiny_run) -> None:
    import os

    r, out, cfg = tiny_run
    cwd = os.getcwd()
    os.chdir(out)
    try:
        r2 = train_detector(DetectConfig(**{**cfg.__dict__, "epochs": 2}), resume=r.last)
    finally:
        os.chdir(cwd)
    assert [h.epoch for h in r2.history] == [1, 2]


def test_config_errors(tmp_path: Path) -> None:
    from edge_app.data.scenes import HELDOUT_SEED

    with pytest.raises(UserError, match="multiple of 32"):
        train_detector(DetectConfig(img=100, out=str(tmp_path / "a")))
    with pytest.raises(UserError, match="held-out"):
        train_detector(DetectConfig(img=64, seed=HELDOUT_SEED, out=str(tmp_path / "b"), scenes=2, val_scenes=2))
    with pytest.raises(UserError, match="base_width 64"):
        train_detector(DetectConfig(img=64, weights="x.pth", base_width=16, out=str(tmp_path / "c")))


def test_resume_refuses_a_classifier(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="classifier checkpoint"):
        train_detector(DetectConfig(out=str(tmp_path)), resume=str(tiny_checkpoint))


def test_trains_on_a_yolo_folder(tmp_path: Path) -> None:
    """A user dataset path end to end: YOLO folder -> reader -> one epoch."""
    import cv2

    from edge_app.data.scenes import SceneConfig, make_scenes

    ds = make_scenes(12, SceneConfig(64, 64), seed=3, split="train")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("\n".join(ds.names) + "\n")
    for i, (img, b, c) in enumerate(zip(ds.images, ds.boxes, ds.classes)):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), img)
        lines = [
            f"{k} {(x1 + x2) / 128} {(y1 + y2) / 128} {(x2 - x1) / 64} {(y2 - y1) / 64}"
            for (x1, y1, x2, y2), k in zip(b, c)
        ]
        (tmp_path / "labels" / f"{i}.txt").write_text("\n".join(lines) + "\n")
    r = train_detector(
        DetectConfig(
            data=str(tmp_path),
            img=64,
            width=8,
            base_width=8,
            epochs=1,
            batch=4,
            val_fraction=0.3,
            out=str(tmp_path / "run"),
            device="cpu",
            threads=1,
        )
    )
    assert Path(r.best).is_file() and "12 images" in r.data


def test_evaluate_picks_the_agnostic_factor_with_the_best_validation_map(tiny_run) -> None:
    """evaluate decodes with every co-located peak factor and reports the one with the highest mAP@0.5; the
    checkpoint carries it, so export and the PyTorch backend decode the same way."""
    from edge_app.data.scenes import SceneConfig, heldout_scenes
    from edge_app.models.checkpoint import load_checkpoint, model_from_checkpoint
    from edge_app.models.detector import AGNOSTIC_CHOICES, DetectorModel, decode
    from edge_app.training.detect import evaluate

    r, _, cfg = tiny_run
    ckpt = load_checkpoint(r.last)
    assert ckpt["detector"]["agnostic"] == r.history[-1].agnostic and r.history[-1].agnostic in AGNOSTIC_CHOICES
    net, spec, _ = model_from_checkpoint(ckpt)
    assert net.agnostic == ckpt["detector"]["agnostic"]
    model = DetectorModel(net, spec).eval()
    data = heldout_scenes(16, SceneConfig(64, 64))
    row, thr = evaluate(model, data, torch.device("cpu"), cfg)
    with torch.no_grad():
        maps = model.forward_maps(torch.from_numpy(data.images))
    maps50 = []
    for a in AGNOSTIC_CHOICES:
        d = list(decode(maps.heat, maps.size, maps.offset, 64, 64, net.max_dets, a).numpy())
        maps50.append(dm.evaluate_dets(d, data.boxes, data.classes, data.names).map50)
    assert row["val_map50"] == pytest.approx(max(maps50), abs=1e-6)
    assert row["agnostic"] == AGNOSTIC_CHOICES[maps50.index(max(maps50))]


def test_history_rows_from_before_the_agnostic_factor_read_as_per_class() -> None:
    from edge_app.training.detect import DetectEpochStats

    row = DetectEpochStats(1, 1.0, 0.5, 0.3, 0.2, 1.1, 0.4, 0.2, 0.5, 0.6, 0.3, 1e-3, 9.0, agnostic=0.5)
    old = {k: v for k, v in row.to_dict().items() if k != "agnostic"}
    assert DetectEpochStats.from_dict(old).agnostic == 1.0
    assert DetectEpochStats.from_dict(row.to_dict()) == row
