from __future__ import annotations

import csv

import pytest
import torch

from edge_app.errors import UserError
from edge_app.models.checkpoint import load_checkpoint, model_from_checkpoint, resolve_device
from edge_app.training.classify import EpochStats, TrainConfig, TrainResult, train


def test_tiny_training_run_lowers_the_loss_and_writes_everything(tiny_dataset, tmp_path) -> None:
    out = tmp_path / "run"
    r = train(TrainConfig(data=str(tiny_dataset), img=32, epochs=3, batch=16, lr=3e-3, out=str(out), device="cpu"))
    hist = r.history
    assert len(hist) == 3
    assert hist[-1].train_loss < hist[0].train_loss
    assert isinstance(r, TrainResult) and all(isinstance(h, EpochStats) for h in hist)
    assert (r.best, r.last, r.out) == (out / "best.pt", out / "last.pt", out)
    assert r.best_top1 == max(h.val_top1 for h in hist) and r.data.classes[0] == "background" and r.weights is None
    for f in ("best.pt", "last.pt", "metrics.csv", "metrics.png"):
        assert (out / f).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r_["epoch"]) for r_ in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "train_loss", "train_top1", "val_loss", "val_top1", "lr", "seconds"]
    assert [float(r_["val_top1"]) for r_ in rows] == pytest.approx([h.val_top1 for h in hist])
    ck = load_checkpoint(out / "last.pt")
    assert ck["history"] == [h.to_dict() for h in hist]  # plain dicts in the checkpoint (weights_only loading)
    assert ck["labels"][0] == "background" and ck["epoch"] == 3 and ck["input"]["height"] == 32
    model, spec, labels = model_from_checkpoint(ck)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, len(labels))
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_resume_continues_from_the_last_epoch(tiny_dataset, tmp_path) -> None:
    out = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dataset), img=32, epochs=1, batch=16, out=str(out), device="cpu"))
    r = train(TrainConfig(epochs=2, out=str(out), device="cpu"), resume=str(out / "last.pt"))
    assert [h.epoch for h in r.history] == [1, 2]
    first = load_checkpoint(out / "last.pt")["history"][0]
    assert r.history[0] == EpochStats.from_dict(first)  # the resumed epoch is read back, not re-run
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_checkpoint_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an edge_app checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_unwritable_output_folder(tiny_dataset, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write to folder"):
        train(TrainConfig(data=str(tiny_dataset), img=32, epochs=1, out=str(blocker / "sub"), device="cpu"))
