"""Detector training (task ``detect``): CenterNet targets and losses, ``train_one_epoch`` / ``evaluate`` /
:func:`train_detector`.

Focal loss on the class heatmap, L1 on box size and centre offset at the object centres
(:mod:`edge_app.training.detect_loss`); the warm-up + cosine schedule, AdamW, the AMP step, resume and the
metrics files are :mod:`edge_app.training.common`'s. Checkpoints (``best.pt`` by validation mAP@0.5,
``last.pt``) carry ``"task": "detect"`` and the head settings, so the task descriptor
(:mod:`edge_app.models.tasks.detect`) rebuilds the network from them.

The network trained is :class:`DetectorModel`: raw uint8 NHWC BGR in, so training sees exactly the exported
graph's preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from edge_app.data.detection import DetectionSet, load_detection_data
from edge_app.engine_dir import InputSpec
from edge_app.errors import FieldError, UserError
from edge_app.fsutil import atomic_write, ensure_writable_dir
from edge_app.models.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_task,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from edge_app.models.detector import (
    AGNOSTIC_CHOICES,
    STRIDE,
    DetectorModel,
    build_detector,
    decode,
    load_backbone_weights,
)
from edge_app.models.tasks.detect import DEFAULT_THRESHOLD, Detect
from edge_app.training import common
from edge_app.training import detect_metrics as dm
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
from edge_app.training.detect_loss import detection_loss, make_targets

log = logging.getLogger(__name__)

TASK = Detect.name


@dataclass
class DetectConfig:
    """Everything a detector run depends on; stored in the checkpoint so --resume continues the same run."""

    data: str = "synthetic"  # 'synthetic' (built-in scenes), a COCO instances.json / folder, or a YOLO folder
    arch: str = "resnet18"
    img: int = 128  # square input, a multiple of 32; shapes of 9 px and up are found at 128
    # Head channels and trunk base width (64 = torchvision's, needed for --weights). The defaults are the
    # quarter-width model measured on a 2-core CPU shared with other jobs (1 thread): 12 epochs over 8000
    # scenes took ~50 min wall and reached val mAP@0.5 0.67, still rising; use 64/64 with ImageNet weights
    # and more epochs on a GPU.
    width: int = 32
    base_width: int = 16
    epochs: int = 12
    batch: int = 32
    lr: float = 2e-3  # peak of warm-up + cosine for AdamW, as the classifier
    weight_decay: float = 0.01
    size_weight: float = 0.1  # CenterNet's weights: size L1 is in cells (0..32), offset L1 in 0..1
    offset_weight: float = 1.0
    weights: str | None = None  # torchvision weights or a classifier checkpoint of this project: initialises the trunk
    device: str = "auto"
    out: str = "runs/detect"
    seed: int = 0
    resize: str = "letterbox"  # frames are 16:9, the model square: keep shapes undistorted
    val_fraction: float = 0.15
    scenes: int = 8000  # built-in data: training scenes (rendered once, cached, flipped/rotated per epoch)
    val_scenes: int = 300
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(frozen=True)
class DetectEpochStats:
    """One row of metrics.csv and of the checkpoint's history (stored there as a plain dict)."""

    epoch: int
    train_loss: float
    train_heat: float
    train_size: float
    train_offset: float
    val_loss: float
    val_map50: float
    val_map50_95: float
    val_precision: float
    val_recall: float
    threshold: float  # best-F1 score threshold on validation
    lr: float  # at the end of the epoch
    seconds: float
    agnostic: float = 1.0  # the decode's co-located peak factor chosen on validation (1: per-class peaks)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DetectEpochStats:
        """A row of the checkpoint's history (rows written before ``agnostic`` existed read as 1.0)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d or f.name != "agnostic"})


@dataclass(frozen=True)
class DetectTrainResult:
    """What :func:`train_detector` returns."""

    best_map50: float
    threshold: float  # operating score threshold (max F1 on validation) of the best checkpoint
    best: Path
    last: Path
    out: Path
    history: tuple[DetectEpochStats, ...]
    data: str  # reader summary
    weights: Mapping[str, str] | None
    seconds: float

    def summary(self) -> str:
        """The line ``train`` prints at the end."""
        return (
            f"best val mAP@0.5 {self.best_map50:.4f} (score threshold {self.threshold:.2f}); "
            f"wrote {self.best}, {self.last}, {self.out}/metrics.csv"
        )


# ----------------------------------------------------------------------------------------- augmentation
def augment_batch(
    images: np.ndarray, boxes: list[np.ndarray], rng: np.random.Generator, rotate: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random horizontal flip per image; with ``rotate`` (square, orientation-free data) the 8 flips/rotations."""
    out = images.copy()
    nb = []
    for i in range(len(out)):
        img, b = out[i], boxes[i].copy()
        h, w = img.shape[:2]
        if rng.random() < 0.5:
            img = img[:, ::-1]
            b[:, [0, 2]] = w - b[:, [2, 0]]
        if rotate and h == w:
            if rng.random() < 0.5:
                img = img[::-1]
                b[:, [1, 3]] = h - b[:, [3, 1]]
            if rng.random() < 0.5:
                img = img.transpose(1, 0, 2)
                b = b[:, [1, 0, 3, 2]]
        out[i] = img
        nb.append(b)
    return out, nb


# ----------------------------------------------------------------------------------------- data
def _scenes_cached(n: int, img: int, seed: int, split: str, cache_dir: Path) -> DetectionSet:
    """Built-in scenes, rendered once and kept as .npz keyed by the recipe (the renderer's source hash included)."""
    import edge_app.data.scenes as sc

    recipe = json.dumps(
        {
            "n": n,
            "img": img,
            "seed": seed,
            "split": split,
            "cfg": asdict(sc.SceneConfig(img, img)),
            "code": hashlib.sha256(Path(sc.__file__).read_bytes()).hexdigest()[:16],
        },
        sort_keys=True,
    )
    path = cache_dir / f"{split}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            z = np.load(path)
            counts = z["counts"]
            cut = np.cumsum(counts)[:-1]
            return DetectionSet(
                z["images"],
                np.split(z["boxes"], cut),
                np.split(z["classes"], cut),
                list(sc.CLASSES),
                f"scenes(seed={seed}, split={split})",
            )
        except (OSError, KeyError, ValueError):
            log.info("scene cache %s unreadable; re-rendering", path)
    ds = sc.make_scenes(n, sc.SceneConfig(img, img), seed, split, progress=True)
    ensure_writable_dir(cache_dir)
    counts = np.array([len(b) for b in ds.boxes], np.int64)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(
                f,
                images=ds.images,
                boxes=np.concatenate(ds.boxes) if ds.boxes else np.zeros((0, 4), np.float32),
                classes=np.concatenate(ds.classes) if ds.classes else np.zeros(0, np.int64),
                counts=counts,
            )

    atomic_write(path, write)
    return ds


def prepare_detection_data(
    cfg: DetectConfig, spec: InputSpec, cache_dir: str | Path = "data/scenes"
) -> tuple[DetectionSet, DetectionSet, str, str]:
    """(train, val, summary line, data root) for --data: built-in scenes or a COCO/YOLO set."""
    if cfg.data == "synthetic":
        from edge_app.data.scenes import HELDOUT_SEED

        if cfg.seed == HELDOUT_SEED:
            raise UserError(f"--seed {HELDOUT_SEED} makes the held-out test scenes; train with any other seed")
        tr = _scenes_cached(cfg.scenes, cfg.img, cfg.seed, "train", Path(cache_dir))
        va = _scenes_cached(cfg.val_scenes, cfg.img, cfg.seed, "val", Path(cache_dir))
        return (
            tr,
            va,
            f"built-in scenes: {len(tr)} train ({tr.num_boxes} boxes), {len(va)} val (seed {cfg.seed})",
            "synthetic",
        )
    tr, va, rep = load_detection_data(cfg.data, spec, cfg.val_fraction, cfg.seed)
    return tr, va, rep.summary(), str(cfg.data)


# ----------------------------------------------------------------------------------------- loops
def train_one_epoch(
    model: DetectorModel,
    data: DetectionSet,
    opt: torch.optim.Optimizer,
    sched: Any,
    cfg: DetectConfig,
    device: torch.device,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler | None,
    rotate: bool,
    desc: str = "",
) -> dict[str, float]:
    """One pass over ``data`` with augmentation; mean loss and its parts."""
    from tqdm import tqdm

    model.train()
    idx = rng.permutation(len(data))
    sums = {"loss": 0.0, "heat": 0.0, "size": 0.0, "offset": 0.0}
    seen = 0
    h, w = data.images.shape[1:3]
    bar = tqdm(range(0, len(idx), cfg.batch), desc=desc, unit="batch", leave=False)
    for s in bar:
        j = idx[s : s + cfg.batch]
        if len(j) < 2:  # BatchNorm cannot train on a batch of one
            continue
        images, boxes = augment_batch(data.images[j], [data.boxes[k] for k in j], rng, rotate)
        tg = make_targets(boxes, [data.classes[k] for k in j], len(data.names), h // STRIDE, w // STRIDE)
        t = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in tg.items()}
        x = torch.from_numpy(images).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
            maps = model.forward_maps(x)
        loss, parts = detection_loss(maps, t, cfg.size_weight, cfg.offset_weight)
        optimizer_step(loss, opt, sched, scaler)
        seen += len(j)
        sums["loss"] += float(loss.detach()) * len(j)
        for k, v in parts.items():
            sums[k] += v * len(j)
        bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}")
    return {f"train_{k}": v / max(1, seen) for k, v in sums.items()}


@torch.no_grad()
def predict_dets(model: DetectorModel, images: np.ndarray, device: torch.device, batch: int = 64) -> list[np.ndarray]:
    """``dets`` (K,6) per image of the PyTorch model."""
    model.eval()
    return dm.predict(lambda x: model(torch.from_numpy(x).to(device)).float().cpu().numpy(), images, batch)


@torch.no_grad()
def evaluate(
    model: DetectorModel, data: DetectionSet, device: torch.device, cfg: DetectConfig, batch: int = 64
) -> tuple[dict[str, float], float]:
    """Validation loss and mAP (faster-coco-eval), P/R at the best-F1 threshold; returns (row, threshold).

    The decode runs with each co-located peak factor of :data:`AGNOSTIC_CHOICES`; the row is the one with the
    highest mAP@0.5 (ties: the earlier choice, per-class peaks first), with its factor as ``agnostic``.
    """
    model.eval()
    h, w = data.images.shape[1:3]
    loss_sum = 0.0
    dets: dict[float, list[np.ndarray]] = {a: [] for a in AGNOSTIC_CHOICES}
    for s in range(0, len(data), batch):
        x = torch.from_numpy(data.images[s : s + batch]).to(device)
        maps = model.forward_maps(x)
        tg = make_targets(
            data.boxes[s : s + batch], data.classes[s : s + batch], len(data.names), h // STRIDE, w // STRIDE
        )
        loss, _ = detection_loss(
            maps, {k: torch.from_numpy(v).to(device) for k, v in tg.items()}, cfg.size_weight, cfg.offset_weight
        )
        loss_sum += float(loss) * len(x)
        for a, out in dets.items():
            out.extend(decode(maps.heat, maps.size, maps.offset, w, h, model.net.max_dets, a).float().cpu().numpy())
    scored = []
    for a, d in dets.items():
        t = dm.best_threshold(d, data.boxes, data.classes)
        scored.append((dm.evaluate_dets(d, data.boxes, data.classes, data.names, threshold=t), t, a))
    acc, thr, agnostic = max(scored, key=lambda r: r[0].map50)  # max keeps the first of equal maxima
    return {
        "val_loss": loss_sum / max(1, len(data)),
        "val_map50": acc.map50,
        "val_map50_95": acc.map50_95,
        "val_precision": acc.precision,
        "val_recall": acc.recall,
        "agnostic": agnostic,
    }, thr


METRIC_PANELS = (
    Panel("loss", (("train", "train_loss"), ("val", "val_loss"))),
    Panel("val mAP", (("mAP@0.5", "val_map50"), ("mAP@0.5:0.95", "val_map50_95")), (0, 1.01)),
)


def write_detect_metrics(out: Path, history: list[DetectEpochStats]) -> tuple[Path, Path]:
    """metrics.csv and metrics.png (loss and validation mAP per epoch), both written atomically."""
    return common.write_metrics(out, [h.to_dict() for h in history], METRIC_PANELS)


# ----------------------------------------------------------------------------------------- main
def check_config(cfg: DetectConfig) -> None:
    """FieldError for settings that cannot train (named by field, not by CLI flag)."""
    if cfg.img % 32 or cfg.img < 64:
        raise FieldError(
            "img",
            str(cfg.img),
            "must be a multiple of 32 and at least 64 (five stride-2 stages, then upsampling "
            f"back to stride 4); use e.g. {max(64, round(cfg.img / 32) * 32)}",
        )
    if cfg.weights and cfg.base_width != 64:
        raise FieldError(
            "weights", f"'{cfg.weights}'", f"need the full-width trunk (base_width 64), got base_width {cfg.base_width}"
        )
    for name in ("width", "base_width", "epochs", "batch", "scenes", "val_scenes", "threads"):
        if getattr(cfg, name) < 1:
            raise FieldError(name, str(getattr(cfg, name)), "must be at least 1")


def train_detector(cfg: DetectConfig, resume: str | None = None) -> DetectTrainResult:
    """Train (or resume) a detector; returns paths, the best validation mAP@0.5 and its operating threshold."""
    out = ensure_writable_dir(cfg.out)
    prev = None
    if resume:
        prev = load_checkpoint(resume)
        if checkpoint_task(prev) != TASK:
            raise UserError(
                f"'{resume}' is a classifier checkpoint; resume a detector run's last.pt, or start a new run"
            )
        saved = prev["config"]
        cfg = resumed_config(DetectConfig, saved, cfg, keep=("out", "device", "threads"))
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    spec = InputSpec(height=cfg.img, width=cfg.img, resize=cfg.resize)
    t0 = time.perf_counter()
    train_set, val_set, summary, root = prepare_detection_data(cfg, spec)
    print(f"data: {root}: {summary}")
    if not len(val_set) or val_set.num_boxes == 0:
        raise UserError(f"the validation split of '{root}' has no boxes; use more data or a larger val_fraction")

    net = build_detector(cfg.arch, len(train_set.names), width=cfg.width, base_width=cfg.base_width)
    weights_info = load_backbone_weights(net, cfg.weights, cfg.arch) if cfg.weights and not prev else None
    model = DetectorModel(net, spec).to(device)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    per_epoch = math.ceil(len(train_set) / cfg.batch)
    steps = cfg.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, warmup_frac=0.05))
    scaler = grad_scaler(device)
    start, best, best_thr = 0, -1.0, DEFAULT_THRESHOLD
    history: list[DetectEpochStats] = []
    if prev:
        if list(prev["labels"]) != list(train_set.names):
            raise UserError(
                f"checkpoint '{resume}' was trained on classes {prev['labels']} but the data has {train_set.names}; resume with the same data"
            )
        net.load_state_dict(prev["model"])
        opt.load_state_dict(prev["optimizer"])
        fast_forward(sched, min(prev["epoch"] * per_epoch, steps - 1))
        start, best, best_thr = prev["epoch"], prev["best_map50"], prev["threshold"]
        history = [DetectEpochStats.from_dict(h) for h in prev["history"]]
        print(f"resuming {resume} at epoch {start + 1}/{cfg.epochs}")
    rng = np.random.default_rng([cfg.seed, start])
    rotate = cfg.data == "synthetic"  # shapes have no up; user photos do
    last_path, best_path = out / "last.pt", out / "best.pt"
    for epoch in range(start, cfg.epochs):
        te = time.perf_counter()
        tr = train_one_epoch(
            model, train_set, opt, sched, cfg, device, rng, scaler, rotate, desc=f"epoch {epoch + 1}/{cfg.epochs}"
        )
        ev, thr = evaluate(model, val_set, device, cfg)
        row = DetectEpochStats(
            epoch=epoch + 1, **tr, **ev, threshold=thr, lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - te
        )
        history.append(row)
        improved = ev["val_map50"] > best
        if improved:
            best, best_thr = ev["val_map50"], thr
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "task": TASK,
            "arch": cfg.arch,
            "labels": list(train_set.names),
            "input": asdict(spec),
            "detector": {
                "width": cfg.width,
                "base_width": cfg.base_width,
                "max_dets": net.max_dets,
                "stride": STRIDE,
                "agnostic": ev["agnostic"],
            },
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch + 1,
            "best_map50": best,
            "map50": ev["val_map50"],
            "map50_95": ev["val_map50_95"],
            "threshold": thr,
            "history": [h.to_dict() for h in history],
            "config": asdict(cfg),
            "data_root": root,
        }
        save_checkpoint(last_path, ckpt)
        if improved:
            save_checkpoint(best_path, ckpt)
        write_detect_metrics(out, history)
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {tr['train_loss']:.3f}  val loss {ev['val_loss']:.3f}  "
            f"val mAP@0.5 {ev['val_map50']:.4f}  mAP@0.5:0.95 {ev['val_map50_95']:.4f}  "
            f"P {ev['val_precision']:.3f} R {ev['val_recall']:.3f} @{thr:.2f}  agnostic {ev['agnostic']:g}  "
            f"({row.seconds:.0f}s){'  *best' if improved else ''}"
        )
    return DetectTrainResult(
        best_map50=best,
        threshold=best_thr,
        best=best_path,
        last=last_path,
        out=out,
        history=tuple(history),
        data=summary,
        weights=weights_info,
        seconds=time.perf_counter() - t0,
    )


TRAINER = Trainer(task=TASK, config_type=DetectConfig, train=train_detector)
