"""Procedural, seeded synthetic data: shape classes over cluttered textured backgrounds.

One renderer draws both the classification dataset (square crops, one object or none) and the test video
(several objects moving over a large background), so a tile cut from the video looks like a dataset image.
Everything is deterministic given the seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_text, ensure_writable_dir

SHAPES = ("circle", "square", "triangle", "star", "cross")
BACKGROUND = "background"
CLASSES = (BACKGROUND, *SHAPES)


# ----------------------------------------------------------------------------------------------- drawing
def textured_background(rng: np.random.Generator, h: int, w: int, crop: int | None = None) -> np.ndarray:
    """A cluttered background: smooth colour field, low-contrast blobs and lines, fine grain.

    ``crop``: draw the blobs at the size they have in a ``crop``-px dataset image (the video passes the
    dataset's image size, so each tile shows crop-sized clutter); default: relative to this image.
    """
    # Low-frequency colour field: upsampled coarse noise.
    gh, gw = max(2, h // 48), max(2, w // 48)
    coarse = rng.uniform(40, 200, size=(gh, gw, 3)).astype(np.float32)
    base = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    # Clutter: soft ellipses and lines in colours near the local field (distractors, not shapes), lower in
    # contrast than the objects so that "shape or background" is learnable in a few CPU minutes.
    n_blobs = int(rng.integers(4, 10) * max(1.0, (h * w) / (96 * 96)))
    for _ in range(n_blobs):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (
            int(rng.integers(3, max(4, min(w, crop or w) // 5))),
            int(rng.integers(3, max(4, min(h, crop or h) // 5))),
        )
        local = base[min(h - 1, c[1]), min(w - 1, c[0])]
        col = [float(v) for v in np.clip(local + rng.uniform(-45, 45, 3), 0, 255)]
        cv2.ellipse(base, c, ax, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 8))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        local = base[p1[1], p1[0]]
        col = [float(v) for v in np.clip(local + rng.uniform(-60, 60, 3), 0, 255)]
        cv2.line(base, p1, p2, col, int(rng.integers(1, 4)), cv2.LINE_AA)
    base = cv2.GaussianBlur(base, (0, 0), sigmaX=float(rng.uniform(1.5, 4.0)))
    base += rng.normal(0, 6, size=base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def shape_polygon(cls: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Vertices (K,2) float of a shape of bounding-circle diameter ``size``, rotated by ``angle`` radians."""
    r = size / 2
    if cls == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r * 0.92
    elif cls == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * r * 0.72
    elif cls == "triangle":
        t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif cls == "star":
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.42)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    elif cls == "cross":
        a, b = 0.95, 0.32
        pts = (
            np.array(
                [
                    [-b, -a],
                    [b, -a],
                    [b, -b],
                    [a, -b],
                    [a, b],
                    [b, b],
                    [b, a],
                    [-b, a],
                    [-b, b],
                    [-a, b],
                    [-a, -b],
                    [-b, -b],
                ],
                np.float64,
            )
            * r
        )
    else:
        raise ValueError(f"unknown shape '{cls}'")
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T + np.array([cx, cy])


def contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[float, float, float]:
    """A saturated colour far (in RGB distance) from the mean colour ``under`` it will be drawn on."""
    mean = under.reshape(-1, 3).mean(0) if under.size else np.full(3, 128.0)
    best, best_d = None, -1.0
    for _ in range(24):
        col = rng.uniform(0, 255, 3)
        col[rng.integers(0, 3)] = rng.choice([rng.uniform(0, 40), rng.uniform(215, 255)])
        d = float(np.linalg.norm(col - mean))
        if d > best_d:
            best, best_d = col, d
        if d > 170:
            break
    return tuple(float(v) for v in best)  # type: ignore[return-value]


def draw_shape(
    img: np.ndarray, cls: str, cx: float, cy: float, size: float, angle: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """Draw one filled shape into ``img`` (in place); return its clipped bounding box x1,y1,x2,y2."""
    pts = shape_polygon(cls, cx, cy, size, angle)
    h, w = img.shape[:2]
    x1, y1 = np.floor(pts.min(0)).astype(int)
    x2, y2 = np.ceil(pts.max(0)).astype(int)
    under = img[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
    col = contrasting_colour(rng, under)
    shift = 4  # sub-pixel precision for anti-aliased polygons
    ipts = np.round(pts * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [ipts], col, cv2.LINE_AA, shift)
    if rng.random() < 0.5:  # an outline sometimes, in a darker tone
        dark = tuple(v * 0.4 for v in col)
        cv2.polylines(img, [ipts], True, dark, int(rng.integers(1, 3)), cv2.LINE_AA, shift)
    return max(0, x1), max(0, y1), min(w, x2), min(h, y2)


def photometric(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Lighting change (gain, bias, gradient), blur and sensor noise."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    gain = 1 + rng.uniform(-0.3, 0.3) * strength
    bias = rng.uniform(-25, 25) * strength
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-20, 20) * strength
    f = f * gain + bias + gx
    k = float(rng.uniform(0, 1.2) * strength)
    if k > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), sigmaX=k)
    f += rng.normal(0, rng.uniform(2, 9) * strength, size=f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- dataset
@dataclass
class SyntheticConfig:
    """Size and difficulty of the built-in dataset; the defaults train to >95% in a few CPU minutes."""

    image_size: int = 96  # stored resolution; training resizes to --img
    train_per_class: int = 500
    val_per_class: int = 100
    seed: int = 0
    # Object diameter as a fraction of the crop side: matches what a video tile sees (see video below).
    min_scale: float = 0.45
    max_scale: float = 0.85
    # Fraction of background crops that hold part of a shape cut by the crop edge, so tiles that cut an
    # object are taught to say "background" rather than read the remainder as another shape.
    partial_background: float = 0.5
    # How far beyond the edge that shape's centre lies, in shape diameters, drawn from [this, 0.5]:
    # 0.05 leaves ~45 % of the shape in view (tiles mode meets such cuts all the time), 0.5 a sliver.
    partial_min_depth: float = 0.05
    # Fraction of object crops that also show a sliver of a neighbouring shape at an edge, as a tile
    # around one object of the video often does.
    neighbour: float = 0.3


def _edge_shape(img: np.ndarray, size: float, depth: tuple[float, float], rng: np.random.Generator) -> None:
    """A random shape whose centre lies ``depth`` (in diameters) beyond a random edge: only part of it shows."""
    s = img.shape[0]
    side = rng.integers(0, 4)
    off = s / 2 + size * rng.uniform(*depth)
    cx, cy = (
        s / 2 + [off, -off, 0, 0][side] + (rng.uniform(-s / 3, s / 3) if side >= 2 else 0),
        s / 2 + [0, 0, off, -off][side] + (rng.uniform(-s / 3, s / 3) if side < 2 else 0),
    )
    draw_shape(img, str(rng.choice(SHAPES)), cx, cy, size, rng.uniform(0, 2 * np.pi), rng)


def render_crop(cls: str, cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """One dataset image of class ``cls`` (BGR uint8, square)."""
    s = cfg.image_size
    img = textured_background(rng, s, s)
    if cls == BACKGROUND:
        if rng.random() < cfg.partial_background:
            _edge_shape(img, rng.uniform(cfg.min_scale, cfg.max_scale) * s, (cfg.partial_min_depth, 0.5), rng)
    else:
        if rng.random() < cfg.neighbour:
            _edge_shape(img, rng.uniform(cfg.min_scale, cfg.max_scale) * s, (0.3, 0.5), rng)
        size = rng.uniform(cfg.min_scale, cfg.max_scale) * s
        slack = max(0.0, (s - size) / 2) + size * 0.12
        cx = s / 2 + rng.uniform(-slack, slack)
        cy = s / 2 + rng.uniform(-slack, slack)
        draw_shape(img, cls, cx, cy, size, rng.uniform(0, 2 * np.pi), rng)
    return photometric(img, rng)


def write_dataset(root: str | Path, cfg: SyntheticConfig = SyntheticConfig(), progress: bool = False) -> Path:
    """Write ``root/{train,val}/<class>/*.png``; skip when a complete set with the same config exists."""
    root = ensure_writable_dir(root)
    stamp = root / "dataset.json"
    want = {"kind": "synthetic-shapes", "classes": list(CLASSES), **cfg.__dict__}
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return root
        except json.JSONDecodeError:
            pass
    jobs = [
        (split, c, i)
        for split, n in (("train", cfg.train_per_class), ("val", cfg.val_per_class))
        for c in CLASSES
        for i in range(n)
    ]
    it: Iterator = iter(jobs)
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="synthetic images", unit="img", leave=False)
    for split, c, i in it:
        # One generator per image, keyed by (seed, split, class, index): any subset regenerates identically.
        rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, CLASSES.index(c), i])
        d = root / split / c
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:05d}.png"), render_crop(c, cfg, rng))
    atomic_write_text(stamp, json.dumps(want, indent=2))  # written last: marks the set complete
    return root


# ----------------------------------------------------------------------------------------------- video
@dataclass
class VideoConfig:
    """The synthetic test video: 720p, 30 fps, objects moving and rotating over a textured background."""

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    frames: int = 300
    objects: int = 4
    # Object diameter in pixels. A 3x3 grid of square tiles on 720p is ~360 px a tile, so objects of
    # 150-290 px fill 0.45-0.8 of a tile, the scale range the dataset is drawn at.
    min_size: float = 160.0
    max_size: float = 280.0
    seed: int = 1
    # Background blobs are drawn at the size they have in a dataset crop of this many px (the dataset's
    # image_size), so a ~360 px tile shows the clutter the model was trained on, not frame-sized blobs.
    clutter_crop: int = 96


class SyntheticScene:
    """Stateful generator of video frames and their ground truth (class + box per object)."""

    def __init__(self, cfg: VideoConfig = VideoConfig()) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        pad = 64
        # Draw the clutter at dataset-crop scale (a 96 px crop ~ a 360 px tile) and upsample, so a tile
        # of the video has the same background statistics as a training image.
        k = 360 / 96
        bh, bw = cfg.height + 2 * pad, cfg.width + 2 * pad
        small = textured_background(self.rng, round(bh / k), round(bw / k), crop=cfg.clutter_crop)
        self.bg = cv2.resize(small, (bw, bh), interpolation=cv2.INTER_CUBIC)
        self.pad = pad
        # Sensor noise from a small precomputed bank: per-frame Gaussian noise at 720p costs ~30 ms.
        self.noise = [self.rng.normal(0, 5, (cfg.height, cfg.width, 3)).astype(np.int16) for _ in range(4)]
        self.objs = [self._new_object(i) for i in range(cfg.objects)]
        self.index = 0

    def _new_object(self, i: int) -> dict:
        c, r = self.cfg, self.rng
        size = r.uniform(c.min_size, c.max_size)
        return {
            "cls": SHAPES[i % len(SHAPES)] if i < len(SHAPES) else str(r.choice(SHAPES)),
            "size": size,
            "x": r.uniform(size / 2, c.width - size / 2),
            "y": r.uniform(size / 2, c.height - size / 2),
            "vx": r.uniform(-4, 4),
            "vy": r.uniform(-3, 3),
            "angle": r.uniform(0, 2 * np.pi),
            "va": r.uniform(-0.05, 0.05),
            "seed": int(r.integers(0, 2**31)),
        }

    def next(self) -> tuple[np.ndarray, list[dict]]:
        """Render the next frame; returns (BGR frame, [{"class", "box"}])."""
        c, t = self.cfg, self.index
        # Slow camera pan across the padded background.
        ox = int(self.pad + self.pad * 0.9 * math.sin(t / 90))
        oy = int(self.pad + self.pad * 0.5 * math.cos(t / 70))
        frame = self.bg[oy : oy + c.height, ox : ox + c.width].copy()
        truth = []
        for o in self.objs:
            rng = np.random.default_rng(o["seed"])  # same colour every frame for an object
            box = draw_shape(frame, o["cls"], o["x"], o["y"], o["size"], o["angle"], rng)
            truth.append({"class": o["cls"], "box": [int(v) for v in box]})
            o["x"] += o["vx"]
            o["y"] += o["vy"]
            o["angle"] += o["va"]
            half = o["size"] / 2
            if not half <= o["x"] <= c.width - half:
                o["vx"] = -o["vx"]
            if not half <= o["y"] <= c.height - half:
                o["vy"] = -o["vy"]
        # Lighting drifts slowly; noise cycles through the bank.
        gain = 1.0 + 0.15 * math.sin(t / 45)
        bias = 12.0 * math.sin(t / 60 + 1.0)
        frame = cv2.convertScaleAbs(frame, alpha=gain, beta=bias)
        frame = np.clip(frame.astype(np.int16) + self.noise[t % len(self.noise)], 0, 255).astype(np.uint8)
        self.index += 1
        return frame, truth

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[dict]]]:
        while self.cfg.frames <= 0 or self.index < self.cfg.frames:
            yield self.next()


def write_video(path: str | Path, cfg: VideoConfig = VideoConfig()) -> tuple[Path, Path]:
    """Write the test video (MP4) and its ground truth (``<stem>.truth.jsonl``); skip if both are current."""
    path = Path(path)
    truth_path = path.with_suffix(".truth.jsonl")
    stamp = path.with_suffix(".json")
    want = {"kind": "synthetic-video", **cfg.__dict__}
    if path.is_file() and truth_path.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return path, truth_path
        except json.JSONDecodeError:
            pass
    ensure_writable_dir(path.parent)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (cfg.width, cfg.height))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write MP4 video '{tmp}'; install an opencv-python build with FFmpeg")
    lines = []
    try:
        for i, (frame, truth) in enumerate(SyntheticScene(cfg)):
            writer.write(frame)
            lines.append(json.dumps({"frame": i, "time": round(i / cfg.fps, 6), "objects": truth}))
    finally:
        writer.release()
    tmp.replace(path)
    atomic_write_text(truth_path, "\n".join(lines) + "\n")
    atomic_write_text(stamp, json.dumps(want, indent=2))
    return path, truth_path
