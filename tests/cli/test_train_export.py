"""`train` and `export`: their user errors as one sentence."""

from __future__ import annotations

from tests.cli.runner import assert_user_error, run_cli


def test_single_class_folder_and_wrong_weights(tmp_path) -> None:
    import cv2
    import numpy as np
    import torch

    from edge_app.models import create_model

    (tmp_path / "ds" / "cat").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "ds" / "cat" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert_user_error(run_cli("train", "--data", str(tmp_path / "ds")), "only one class")
    (tmp_path / "ds" / "dog").mkdir()
    for c in ("cat", "dog"):
        for i in range(4):
            cv2.imwrite(str(tmp_path / "ds" / c / f"{i}.png"), np.full((8, 8, 3), i * 40, np.uint8))
    torch.save(create_model("resnet50", 3).state_dict(), tmp_path / "r50.pth")
    assert_user_error(
        run_cli(
            "train",
            "--data",
            str(tmp_path / "ds"),
            "--weights",
            str(tmp_path / "r50.pth"),
            "--out",
            str(tmp_path / "o"),
        ),
        r"do not fit resnet18 .*these weights fit --arch resnet50",
    )


def test_not_a_checkpoint(tmp_path) -> None:
    p = tmp_path / "model.pt"
    p.write_text("definitely not a checkpoint")
    assert_user_error(run_cli("export", str(p), "--name", "x", "--engines", str(tmp_path)), "not a readable checkpoint")


def test_help_names_what_each_takes() -> None:
    """Issue 25: train's --data names coco:/yolo:, annotate takes videos, photos, folders and globs."""
    train = run_cli("train", "--help").stdout
    assert "coco:PATH" in train and "yolo:PATH" in train
    annotate = " ".join(run_cli("annotate", "--help").stdout.split())
    assert "videos and photos" in annotate and "folders" in annotate and "globs" in annotate


def test_export_agnostic_user_errors(det_checkpoint, tmp_path) -> None:
    """`export --agnostic` out of range, or with --weights: one sentence, non-zero exit, nothing written."""
    assert_user_error(
        run_cli("export", str(det_checkpoint), "--name", "d", "--engines", str(tmp_path), "--agnostic", "2"),
        r"--agnostic 2.0 is not in 0..1",
    )
    assert not (tmp_path / "d").exists()
    assert_user_error(
        run_cli("export", "--weights", "w.pth", "--arch", "resnet18", "--name", "d", "--agnostic", "0"),
        "--agnostic applies to detector checkpoints",
    )
    ok = run_cli("export", str(det_checkpoint), "--name", "d", "--engines", str(tmp_path), "--agnostic", "0.5")
    assert ok.returncode == 0, ok.stderr
    assert "agnostic 0.5" in ok.stdout
