"""Image-folder datasets (``root/<class>/*.jpg`` or ``root/{train,val}/<class>/...``), decoded with OpenCV.

Images are decoded once, resized to the model input and kept in memory as one uint8 NHWC BGR array: the
same layout the exported graph takes, so training and inference see identical pixels. Unreadable files
are skipped, counted and reported; they never stop a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_app.engine_dir import InputSpec
from edge_app.errors import UserError
from edge_app.geometry import resize_to_input

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class ImageSet:
    """Decoded images (N,H,W,3 uint8 BGR) with integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class LoadReport:
    """What the loader found: counts per split and the files it had to skip."""

    classes: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    split: str = "folders"  # "folders" (train/ and val/ given) or "random" (val split off train)

    def summary(self) -> str:
        parts = [f"{k} {v}" for k, v in self.counts.items()]
        s = f"{len(self.classes)} classes, " + ", ".join(parts) + f" images ({self.split} split)"
        if self.skipped:
            s += f"; skipped {len(self.skipped)} unreadable file(s), e.g. {self.skipped[0]}"
        return s


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted for determinism."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image as BGR uint8, or None when it cannot be read (missing, truncated, not an image)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] < 2 or img.shape[1] < 2:
        return None
    return img


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    items = []
    for i, c in enumerate(classes):
        d = root / c
        if d.is_dir():
            items += [(p, i) for p in list_images(d)]
    return items


def _decode(items: list[tuple[Path, int]], spec: InputSpec, report: LoadReport) -> ImageSet:
    images = np.empty((len(items), spec.height, spec.width, 3), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    n = 0
    for path, label in items:
        img = read_image(path)
        if img is None:
            report.skipped.append(str(path))
            continue
        images[n] = resize_to_input(img, spec)
        labels[n] = label
        n += 1
    return ImageSet(images[:n], labels[:n])


def load_image_folder(
    root: str | Path, spec: InputSpec, val_fraction: float = 0.15, seed: int = 0
) -> tuple[ImageSet, ImageSet, LoadReport]:
    """Load a classification dataset; split ``val_fraction`` off (stratified, seeded) when there is no val/."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"dataset folder '{root}' does not exist; pass --data synthetic or a folder of <class>/ image folders"
        )
    train_root = root / "train" if (root / "train").is_dir() else root
    val_root = root / "val" if (root / "val").is_dir() and train_root != root else None
    classes = [d.name for d in _class_dirs(train_root)]
    if not classes:
        raise UserError(f"dataset folder '{train_root}' has no class folders; put images in '{train_root}/<class>/'")
    if len(classes) < 2:
        raise UserError(
            f"dataset folder '{train_root}' has only one class ('{classes[0]}'); a classifier needs at least two class folders"
        )
    report = LoadReport(classes=classes, split="folders" if val_root else "random")
    train_items = _scan(train_root, classes)
    if not train_items:
        raise UserError(
            f"dataset folder '{train_root}' has class folders but no images ({', '.join(sorted(IMAGE_EXTS))})"
        )
    if val_root is not None:
        val_items = _scan(val_root, classes)
    else:
        rng = np.random.default_rng(seed)
        val_items, keep = [], []
        for c in range(len(classes)):
            idx = [i for i, (_, lab) in enumerate(train_items) if lab == c]
            rng.shuffle(idx)
            n_val = int(round(len(idx) * val_fraction)) if len(idx) > 1 else 0
            val_items += [train_items[i] for i in idx[:n_val]]
            keep += [train_items[i] for i in idx[n_val:]]
        train_items = keep
    train = _decode(train_items, spec, report)
    val = _decode(val_items, spec, report)
    report.counts = {"train": len(train), "val": len(val)}
    if report.skipped:
        log.warning("skipped %d unreadable image(s), e.g. %s", len(report.skipped), report.skipped[0])
    present = set(np.unique(train.labels).tolist())
    empty = [c for i, c in enumerate(classes) if i not in present]
    if empty:
        raise UserError(
            f"class folder(s) {', '.join(repr(c) for c in empty)} have no readable training images; add images or remove the folder"
        )
    if len(val) == 0:
        raise UserError(f"dataset '{root}' leaves no validation images; add a val/ folder or more images per class")
    return train, val, report


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light augmentation on a uint8 NHWC batch: flips, small shifts (reflect padding), brightness/contrast."""
    n, h, w, _ = batch.shape
    out = batch.copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    pad = max(1, h // 16)
    padded = np.pad(out, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    for i in range(n):
        out[i] = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    gain = rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-20, 20, (n, 1, 1, 1)).astype(np.float32)
    return np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
