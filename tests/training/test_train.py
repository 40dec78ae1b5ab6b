from __future__ import annotations

import csv

import pytest
import torch

from edge_app.errors import UserError
from edge_app.training.train import TrainConfig, load_checkpoint, model_from_checkpoint, resolve_device, train


def test_tiny_training_run_lowers_the_loss_and_writes_everything(tiny_dataset, tmp_path) -> None:
    out = tmp_path / "run"
    r = train(TrainConfig(data=str(tiny_dataset), img=32, epochs=3, batch=16, lr=3e-3, out=str(out), device="cpu"))
    hist = r.history
    assert len(hist) == 3
    assert hist[-1].train_loss < hist[0].train_loss
    for f in ("best.pt", "last.pt", "metrics.csv", "metrics.png"):
        assert (out / f).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r_["epoch"]) for r_ in rows] == [1, 2, 3]
    ck = load_checkpoint(out / "last.pt")
    assert ck["labels"][0] == "background" and ck["epoch"] == 3 and ck["input"]["height"] == 32
    model, spec, labels = model_from_checkpoint(ck)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, len(labels))
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_resume_continues_from_the_last_epoch(tiny_dataset, tmp_path) -> None:
    out = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dataset), img=32, epochs=1, batch=16, out=str(out), device="cpu"))
    r = train(TrainConfig(epochs=2, out=str(out), device="cpu"), resume=str(out / "last.pt"))
    assert [h.epoch for h in r.history] == [1, 2]
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
