"""Classifier training and fine-tuning (task ``classify``): ``train_one_epoch`` / ``evaluate`` / ``train``.

The schedule, optimiser step, resume and metrics files are :mod:`edge_app.training.common`'s, shared with
every task.

The network trained is :class:`PreprocessedModel`: it takes the raw uint8 NHWC BGR batch, exactly the
graph that export writes, so no preprocessing can drift between training and deployment.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_app.data.folder import ImageSet, LoadReport, augment, load_image_folder
from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError
from edge_app.fsutil import ensure_writable_dir
from edge_app.models import create_model, load_weights
from edge_app.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, resolve_device, save_checkpoint
from edge_app.models.preprocess import PreprocessedModel
from edge_app.training import common
from edge_app.training.common import (
    Panel,
    Trainer,
    adamw,
    fast_forward,
    grad_scaler,
    optimizer_step,
    resumed_config,
    warmup_cosine,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint so --resume continues the same run."""

    data: str = "synthetic"
    arch: str = "resnet18"
    img: int = 64  # small default: the synthetic shapes are legible at 64 px and CPU training stays fast
    epochs: int = 6
    batch: int = 32  # small batches: more optimiser steps per CPU-second for short runs
    lr: float = (
        2e-3  # peak of a warm-up + cosine schedule for AdamW: converges in few steps, from scratch or fine-tuning
    )
    weight_decay: float = 0.05
    label_smoothing: float = 0.05
    weights: str | None = None
    device: str = "auto"
    out: str = "runs/train"
    seed: int = 0
    resize: str = "stretch"
    val_fraction: float = 0.15
    workers_threads: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(frozen=True)
class EpochStats:
    """One row of metrics.csv and of the checkpoint's history (stored there as a plain dict)."""

    epoch: int
    train_loss: float
    train_top1: float  # on the augmented training batches
    val_loss: float
    val_top1: float
    lr: float  # at the end of the epoch
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EpochStats:
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns: where the checkpoints went, the best validation top-1 and the per-epoch history."""

    best_top1: float
    best: Path  # best.pt: the epoch with the highest val top-1
    last: Path  # last.pt: the latest epoch, what --resume continues
    out: Path  # the run folder (also holds metrics.csv and metrics.png)
    history: tuple[EpochStats, ...]
    data: LoadReport  # what the data loader found
    weights: Mapping[str, str] | None  # load_weights' report when --weights was given
    seconds: float

    def summary(self) -> str:
        """The line ``train`` prints at the end."""
        return (
            f"best val top-1 {self.best_top1:.4f}; wrote {self.best}, {self.last}, {self.out}/metrics.csv, "
            f"{self.out}/metrics.png"
        )


# ----------------------------------------------------------------------------------------- loops
def iterate_batches(data: ImageSet, batch: int, shuffle: bool, rng: np.random.Generator):
    """Yield (images uint8 NHWC, labels) numpy batches."""
    idx = rng.permutation(len(data)) if shuffle else np.arange(len(data))
    for s in range(0, len(idx), batch):
        j = idx[s : s + batch]
        yield data.images[j], data.labels[j]


def train_one_epoch(
    model: nn.Module,
    data: ImageSet,
    opt: torch.optim.Optimizer,
    sched: Any,
    cfg: TrainConfig,
    device: torch.device,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler | None,
    desc: str = "",
) -> dict[str, float]:
    """One pass over ``data`` with augmentation; returns mean loss and top-1 on the augmented batches."""
    from tqdm import tqdm

    model.train()
    n_batches = math.ceil(len(data) / cfg.batch)
    total, correct, loss_sum = 0, 0, 0.0
    bar = tqdm(iterate_batches(data, cfg.batch, True, rng), total=n_batches, desc=desc, unit="batch", leave=False)
    for images, labels in bar:
        if len(labels) < 2:  # BatchNorm cannot train on a batch of one
            continue
        x = torch.from_numpy(augment(images, rng)).to(device, non_blocking=True)
        y = torch.from_numpy(labels).to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        optimizer_step(loss, opt, sched, scaler)
        total += len(y)
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
    return {"train_loss": loss_sum / max(1, total), "train_top1": correct / max(1, total)}


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, device: torch.device, batch: int = 128) -> dict[str, float]:
    """Mean loss and top-1 accuracy of ``model`` (uint8 NHWC input) on ``data``."""
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for images, labels in iterate_batches(data, batch, False, np.random.default_rng(0)):
        x = torch.from_numpy(images).to(device)
        y = torch.from_numpy(labels).to(device)
        logits = model(x).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    return {"val_loss": loss_sum / max(1, total), "val_top1": correct / max(1, total)}


METRIC_PANELS = (
    Panel("loss", (("train", "train_loss"), ("val", "val_loss"))),
    Panel("top-1", (("train", "train_top1"), ("val", "val_top1")), (0, 1.01)),
)


def write_metrics(out: Path, history: Sequence[EpochStats]) -> tuple[Path, Path]:
    """metrics.csv and metrics.png (loss and top-1 per epoch), both written atomically."""
    return common.write_metrics(out, [h.to_dict() for h in history], METRIC_PANELS)


# ----------------------------------------------------------------------------------------- main
def prepare_data(cfg: TrainConfig, spec: InputSpec) -> tuple[ImageSet, ImageSet, LoadReport, Path]:
    """Resolve --data (generating the synthetic set when asked) and load it."""
    if cfg.data == "synthetic":
        from edge_app.data.synthetic import write_dataset

        root = write_dataset(Path("data") / "synthetic", progress=True)
    else:
        root = Path(cfg.data)
    train, val, report = load_image_folder(root, spec, cfg.val_fraction, cfg.seed)
    return train, val, report, root


def train(cfg: TrainConfig, resume: str | None = None) -> TrainResult:
    """Train (or resume) a classifier; returns the checkpoint paths, the best val top-1 and the history."""
    out = ensure_writable_dir(cfg.out)
    ckpt_prev = None
    if resume:
        ckpt_prev = load_checkpoint(resume)
        saved = ckpt_prev["config"]
        # The data, model and schedule of the run are fixed by the checkpoint; only the length may grow.
        cfg = resumed_config(TrainConfig, saved, cfg, keep=("out", "device"))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.workers_threads)
    device = resolve_device(cfg.device)
    spec = InputSpec(height=cfg.img, width=cfg.img, resize=cfg.resize)
    t0 = time.perf_counter()
    train_set, val_set, report, root = prepare_data(cfg, spec)
    log.info("data %s: %s (%.1fs)", root, report.summary(), time.perf_counter() - t0)
    print(f"data: {root}: {report.summary()}")

    net = create_model(cfg.arch, num_classes=len(report.classes), zero_init_residual=True)
    weights_info = load_weights(net, cfg.weights, cfg.arch) if cfg.weights and not ckpt_prev else None
    model = PreprocessedModel(net, spec).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train_set) / cfg.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps))
    scaler = grad_scaler(device)
    start_epoch, best = 0, -1.0
    history: list[EpochStats] = []
    if ckpt_prev:
        if list(ckpt_prev["labels"]) != report.classes:
            raise UserError(
                f"checkpoint '{resume}' was trained on classes {ckpt_prev['labels']} but the data has {report.classes}; resume with the same --data"
            )
        net.load_state_dict(ckpt_prev["model"])
        opt.load_state_dict(ckpt_prev["optimizer"])
        # The schedule may have grown (more --epochs): rebuild it for the new length and fast-forward it.
        fast_forward(sched, min(ckpt_prev["epoch"] * math.ceil(len(train_set) / cfg.batch), steps - 1))
        start_epoch, best = ckpt_prev["epoch"], ckpt_prev["best_top1"]
        history = [EpochStats.from_dict(h) for h in ckpt_prev["history"]]
        print(f"resuming {resume} at epoch {start_epoch + 1}/{cfg.epochs}")
    rng = np.random.default_rng([cfg.seed, start_epoch])
    last_path, best_path = out / "last.pt", out / "best.pt"
    for epoch in range(start_epoch, cfg.epochs):
        te = time.perf_counter()
        tr = train_one_epoch(
            model, train_set, opt, sched, cfg, device, rng, scaler, desc=f"epoch {epoch + 1}/{cfg.epochs}"
        )
        ev = evaluate(model, val_set, device)
        row = EpochStats(epoch=epoch + 1, **tr, **ev, lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - te)
        history.append(row)
        improved = ev["val_top1"] > best
        best = max(best, ev["val_top1"])
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "arch": cfg.arch,
            "labels": report.classes,
            "input": asdict(spec),
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch + 1,
            "best_top1": best,
            "top1": ev["val_top1"],
            "history": [h.to_dict() for h in history],
            "config": asdict(cfg),
            "data_root": str(root),
        }
        save_checkpoint(last_path, ckpt)
        if improved:
            save_checkpoint(best_path, ckpt)
        write_metrics(out, history)
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {tr['train_loss']:.3f}  train top-1 {tr['train_top1']:.3f}  "
            f"val top-1 {ev['val_top1']:.3f}  ({row.seconds:.0f}s){'  *best' if improved else ''}"
        )
    return TrainResult(
        best_top1=best,
        best=best_path,
        last=last_path,
        out=out,
        history=tuple(history),
        data=report,
        weights=weights_info,
        seconds=time.perf_counter() - t0,
    )


TRAINER = Trainer(task="classify", config_type=TrainConfig, train=train)
