"""Built-in detection scenes: several shapes per image with box ground truth, domain-randomised, seeded.

The detector is judged on videos and photographs it never saw, and photographs are not allowed as training
material, so every scene randomises what a real frame may vary in (domain randomisation, Tobin et al. 2017):
background kind (the cluttered texture of :mod:`edge_app.data.synthetic`, gradients, multi-scale noise, stripes
and checks, flat colour, high-contrast clutter), object fill (contrasting or random flat colour, gradient,
texture, outline), object scale (log-uniform, 6-75 % of the short side), truncation at the edges, overlap,
non-class distractors, letterbox bars, and the camera (gain, bias, gradients, blur, motion blur, low resolution,
noise, greyscale, JPEG). Shapes are drawn with :mod:`edge_app.data.synthetic`'s polygons and colours.

Seeds (one generator per image, keyed ``[seed, split, index]``, so any subset regenerates identically):

- ``train`` split 0 and ``val`` split 1 with the training seed (default 0): training and choosing settings.
- ``test`` split 2 with :data:`HELDOUT_SEED`: the held-out scene set, never used for training or settings;
  :func:`make_scenes` refuses the test split with any other seed, and training refuses this seed.
- :data:`HELDOUT_VIDEO`: a second held-out set with another recipe altogether (the moving-objects video
  renderer :class:`edge_app.data.synthetic.SyntheticScene` at 720p, seed 4242), evaluated letterboxed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_app.data.synthetic import (
    SHAPES,
    VideoConfig,
    contrasting_colour,
    photometric,
    shape_polygon,
    textured_background,
)

CLASSES = SHAPES  # a detector has no "background" class: background is the absence of a box
SPLITS = {"train": 0, "val": 1, "test": 2}
HELDOUT_SEED = 20261129  # the held-out scene set; see the module docstring
# The held-out video: more and smaller objects than the demo video (seed 1), a seed no other code uses.
HELDOUT_VIDEO = VideoConfig(frames=300, objects=7, min_size=90.0, max_size=300.0, seed=4242)
BACKGROUNDS = ("texture", "gradient", "noise", "stripes", "flat", "clutter")
FILLS = ("contrast", "random", "gradient", "texture")


@dataclass
class SceneConfig:
    """Recipe of the built-in scenes; the defaults are the training distribution."""

    height: int = 128
    width: int = 128
    max_objects: int = 8
    empty: float = 0.08  # fraction of scenes with no object at all: teaches "nothing here"
    # Object diameter as a fraction of the short side, drawn log-uniformly: small objects are as common as big.
    min_size: float = 0.07
    max_size: float = 0.75
    truncate: float = 0.25  # chance an object is placed across an image edge
    min_visible: float = 0.45  # ... keeping at least this fraction of its box inside (else it is moved)
    max_cover: float = 0.45  # a new object hides at most this fraction of an earlier object's box
    distractors: tuple[int, int] = (0, 4)  # non-class shapes (ellipses, bars, arcs) per scene
    letterbox: float = 0.15  # chance of grey (114) bars, as a letterboxed 16:9 frame has
    jpeg: float = 0.5  # chance of JPEG re-encoding at quality 25-95
    low_res: float = 0.25  # chance of rendering at 35-80 % resolution and upscaling (soft, blocky frames)
    grey: float = 0.07  # chance of a greyscale frame
    backgrounds: tuple[str, ...] = field(default=BACKGROUNDS)


# ----------------------------------------------------------------------------------------------- background
def _background(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if kind == "texture":
        return textured_background(rng, h, w)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = np.cos(a) * xx / w + np.sin(a) * yy / h
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        if rng.random() < 0.4:  # radial
            t = np.hypot(xx / w - rng.uniform(), yy / h - rng.uniform()).astype(np.float32)
            t /= max(1e-6, float(t.max()))
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "noise":
        img = np.zeros((h, w, 3), np.float32)
        amp = 1.0
        for cells in (4, 12, 32):  # multi-scale value noise
            g = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
            img += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
            amp *= rng.uniform(0.3, 0.7)
        img = (c1 + c2) / 2 + img * rng.uniform(20, 70)
    elif kind == "stripes":
        a, period = rng.uniform(0, np.pi), rng.uniform(4, max(6.0, min(h, w) / 3))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        u = np.cos(a) * xx + np.sin(a) * yy
        wave = np.sin(2 * np.pi * u / period)
        if rng.random() < 0.5:  # checks
            v = -np.sin(a) * xx + np.cos(a) * yy
            wave = wave * np.sin(2 * np.pi * v / period)
        t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2
        t = cv2.GaussianBlur(t, (0, 0), sigmaX=float(rng.uniform(0.5, 2.0)))
        img = c1 * (1 - t[..., None]) + (c1 + (c2 - c1) * rng.uniform(0.2, 0.6)) * t[..., None]
    elif kind == "flat":
        img = np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    elif kind == "clutter":
        img = np.broadcast_to(c1, (h, w, 3)).astype(np.float32).copy()
        for _ in range(int(rng.integers(5, 25))):
            col = [float(v) for v in rng.uniform(0, 255, 3)]
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            if rng.random() < 0.5:
                ax = (int(rng.integers(2, max(3, w // 3))), int(rng.integers(2, max(3, h // 3))))
                cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
            else:
                p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
                cv2.line(img, c, p2, col, int(rng.integers(1, max(2, min(h, w) // 16))), cv2.LINE_AA)
    else:
        raise ValueError(f"unknown background kind '{kind}'; choose from {BACKGROUNDS}")
    img = img + rng.normal(0, rng.uniform(0, 8), (h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- objects
def _fill_image(kind: str, rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
    """What fills an object's polygon inside ``patch`` (same shape), float32."""
    h, w = patch.shape[:2]
    if kind == "random":  # any colour, but visibly different from what is under it (else the box is unlearnable)
        under = patch.reshape(-1, 3).mean(0) if patch.size else np.full(3, 128.0)
        base = rng.uniform(0, 255, 3)
        for _ in range(10):
            if np.linalg.norm(base - under) > 80:
                break
            base = rng.uniform(0, 255, 3)
        base = base.astype(np.float32)
    else:
        base = np.array(contrasting_colour(rng, patch), np.float32)
    if kind in ("contrast", "random"):
        return np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    if kind == "gradient":
        other = np.clip(base + rng.uniform(-90, 90, 3), 0, 255)
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = np.cos(a) * xx / max(1, w) + np.sin(a) * yy / max(1, h)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        return (base * (1 - t[..., None]) + other * t[..., None]).astype(np.float32)
    g = rng.uniform(-1, 1, (int(rng.integers(2, 8)),) * 2 + (1,)).astype(np.float32)
    tex = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return (base + tex[..., None] * rng.uniform(10, 45)).astype(np.float32)


def draw_object(
    img: np.ndarray,
    cls: str,
    cx: float,
    cy: float,
    size: float,
    angle: float,
    rng: np.random.Generator,
    fill: str = "contrast",
) -> tuple[float, float, float, float]:
    """Draw one class shape (anti-aliased, alpha-blended fill, sometimes an outline) into ``img`` in place.

    Returns the polygon's bounding box clipped to the image (x1, y1, x2, y2 in pixels, float).
    """
    h, w = img.shape[:2]
    pts = shape_polygon(cls, cx, cy, size, angle)
    lo, hi = pts.min(0), pts.max(0)
    x1, y1 = max(0, int(math.floor(lo[0])) - 2), max(0, int(math.floor(lo[1])) - 2)
    x2, y2 = min(w, int(math.ceil(hi[0])) + 2), min(h, int(math.ceil(hi[1])) + 2)
    if x2 > x1 and y2 > y1:
        patch = img[y1:y2, x1:x2]
        mask = np.zeros(patch.shape[:2], np.uint8)
        shift = 4  # sub-pixel precision for anti-aliased polygons
        ipts = np.round((pts - [x1, y1]) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [ipts], 255, cv2.LINE_AA, shift)
        colour = _fill_image(fill, rng, patch)
        if rng.random() < 0.35:  # an outline in a darker or lighter tone
            edge = np.zeros_like(mask)
            cv2.polylines(edge, [ipts], True, 255, int(rng.integers(1, 3)), cv2.LINE_AA, shift)
            tone = colour.mean((0, 1)) * (0.35 if rng.random() < 0.7 else 1.6)
            e = (edge.astype(np.float32) / 255.0)[..., None]
            colour = colour * (1 - e) + np.clip(tone, 0, 255) * e
            mask = np.maximum(mask, edge)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        patch[:] = np.clip(patch.astype(np.float32) * (1 - a) + colour * a, 0, 255).astype(np.uint8)
    return (
        float(np.clip(lo[0], 0, w)),
        float(np.clip(lo[1], 0, h)),
        float(np.clip(hi[0], 0, w)),
        float(np.clip(hi[1], 0, h)),
    )


def _distractor(img: np.ndarray, rng: np.random.Generator, short: int, max_frac: float = 0.4) -> None:
    """A non-class shape at object contrast: elongated ellipses, bars, arcs (never a near-circle or square)."""
    h, w = img.shape[:2]
    col = [float(v) for v in rng.uniform(0, 255, 3)]
    c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    r = max(3, int(short * math.exp(rng.uniform(math.log(0.05), math.log(max_frac)))))
    kind = rng.integers(0, 3)
    if kind == 0:
        cv2.ellipse(
            img,
            c,
            (r, max(1, int(r / rng.uniform(1.8, 4.0)))),
            float(rng.uniform(0, 180)),
            0,
            360,
            col,
            -1,
            cv2.LINE_AA,
        )
    elif kind == 1:
        cv2.line(
            img,
            c,
            (int(c[0] + rng.uniform(-2, 2) * r), int(c[1] + rng.uniform(-2, 2) * r)),
            col,
            max(1, int(r / rng.uniform(3, 8))),
            cv2.LINE_AA,
        )
    else:
        start = float(rng.uniform(0, 360))
        cv2.ellipse(img, c, (r, r), 0, start, start + float(rng.uniform(60, 200)), col, max(1, r // 5), cv2.LINE_AA)


def _place(
    rng: np.random.Generator,
    cfg: SceneConfig,
    h: int,
    w: int,
    size: float,
    boxes: list[tuple[float, float, float, float]],
) -> tuple[float, float] | None:
    """A centre for an object of diameter ``size``: visible and covering earlier boxes within the limits."""
    half = size / 2
    for _ in range(20):
        if rng.random() < cfg.truncate:
            cx, cy = rng.uniform(-half * 0.4, w + half * 0.4), rng.uniform(-half * 0.4, h + half * 0.4)
        else:
            cx, cy = (
                rng.uniform(min(half, w / 2), max(w - half, w / 2)),
                rng.uniform(min(half, h / 2), max(h - half, h / 2)),
            )
        full = (cx - half, cy - half, cx + half, cy + half)
        vis = max(0.0, min(full[2], w) - max(full[0], 0)) * max(0.0, min(full[3], h) - max(full[1], 0))
        if vis < cfg.min_visible * size * size:
            continue
        ok = True
        for b in boxes:
            ix = max(0.0, min(full[2], b[2]) - max(full[0], b[0]))
            iy = max(0.0, min(full[3], b[3]) - max(full[1], b[1]))
            area = max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
            if ix * iy / area > cfg.max_cover:
                ok = False
                break
        if ok:
            return cx, cy
    return None


# ----------------------------------------------------------------------------------------------- scenes
def render_scene(cfg: SceneConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: (BGR uint8 (H,W,3), boxes float32 (M,4) x1,y1,x2,y2 in pixels, classes int64 (M,))."""
    H, W = cfg.height, cfg.width
    # Letterbox: the content is a wide or tall frame with grey bars around it, as a 16:9 frame fed to a
    # square model looks after the host's letterbox resize.
    x0 = y0 = 0
    h, w = H, W
    if rng.random() < cfg.letterbox:
        aspect = rng.uniform(1.3, 2.0)
        if rng.random() < 0.75:  # wide content, bars above and below
            h = max(16, int(round(W / aspect)))
            if h > H:  # a wide canvas: the content fills the height, bars at the sides
                h, w = H, min(W, int(round(H * aspect)))
        else:  # tall content, bars left and right
            w = max(16, int(round(H / aspect)))
            if w > W:
                w, h = W, min(H, int(round(W * aspect)))
        y0, x0 = (H - h) // 2, (W - w) // 2
    scale = rng.uniform(0.35, 0.8) if rng.random() < cfg.low_res else 1.0
    rh, rw = max(16, int(h * scale)), max(16, int(w * scale))
    img = _background(str(rng.choice(cfg.backgrounds)), rng, rh, rw)
    short = min(rh, rw)
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        _distractor(img, rng, short)
    n = 0 if rng.random() < cfg.empty else int(rng.integers(1, cfg.max_objects + 1))
    boxes: list[tuple[float, float, float, float]] = []
    classes: list[int] = []
    for _ in range(n):
        size = short * math.exp(rng.uniform(math.log(cfg.min_size), math.log(cfg.max_size)))
        at = _place(rng, cfg, rh, rw, size, boxes)
        if at is None:
            continue
        c = int(rng.integers(0, len(CLASSES)))
        box = draw_object(img, CLASSES[c], at[0], at[1], size, rng.uniform(0, 2 * np.pi), rng, str(rng.choice(FILLS)))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        boxes.append(box)
        classes.append(c)
    if rng.random() < 0.3:  # a small distractor in front of objects too (a partial occluder)
        _distractor(img, rng, short, max_frac=0.12)
    img = photometric(img, rng, strength=float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.15:  # motion blur along a random direction
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, rot, (k, k))
        img = cv2.filter2D(img, -1, kern / max(1e-6, float(kern.sum())))
    b = np.array(boxes, np.float32).reshape(-1, 4)
    if (rh, rw) != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR if rng.random() < 0.7 else cv2.INTER_NEAREST)
        b *= np.array([w / rw, h / rh, w / rw, h / rh], np.float32)
    if rng.random() < cfg.grey:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if (h, w) != (H, W):
        canvas = np.full((H, W, 3), 114, np.uint8)
        canvas[y0 : y0 + h, x0 : x0 + w] = img
        img = canvas
        b += np.array([x0, y0, x0, y0], np.float32)
    if rng.random() < cfg.jpeg:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 96))])
        if ok:
            img = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return img, b, np.array(classes, np.int64)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one scene: keyed by (seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
    return np.random.default_rng([seed, SPLITS[split], index])


def make_scenes(
    n: int,
    cfg: SceneConfig = SceneConfig(),
    seed: int = 0,
    split: str = "train",
    start: int = 0,
    progress: bool = False,
):
    """``n`` scenes of ``split`` as a :class:`edge_app.data.detection.DetectionSet` (images at cfg's size)."""
    from edge_app.data.detection import DetectionSet

    if split == "test" and seed != HELDOUT_SEED:
        raise ValueError(f"the test split is the held-out set: it is made with HELDOUT_SEED ({HELDOUT_SEED}) only")
    images = np.empty((n, cfg.height, cfg.width, 3), np.uint8)
    boxes, classes = [], []
    it = range(start, start + n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render {split} scenes", unit="img", leave=False)
    for j, i in enumerate(it):
        img, b, c = render_scene(cfg, scene_rng(seed, split, i))
        images[j] = img
        boxes.append(b)
        classes.append(c)
    return DetectionSet(images, boxes, classes, list(CLASSES), source=f"scenes(seed={seed}, split={split})")


def heldout_scenes(n: int = 500, cfg: SceneConfig = SceneConfig()):
    """The held-out scene set (split 'test', :data:`HELDOUT_SEED`): for final numbers only."""
    return make_scenes(n, cfg, HELDOUT_SEED, "test")


def heldout_video_frames(
    n: int = 60, every: int = 5, cfg: VideoConfig = HELDOUT_VIDEO
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Every ``every``-th of the first ``n * every`` frames of the held-out video: (frames, boxes, class ids).

    Frames are full size (720p); boxes are in frame pixels. Rendered in memory: no codec in the loop.
    """
    from edge_app.data.synthetic import SyntheticScene

    scene = SyntheticScene(VideoConfig(**{**cfg.__dict__, "frames": n * every}))
    frames, boxes, classes = [], [], []
    for i, (frame, truth) in enumerate(scene):
        if i % every:
            continue
        frames.append(frame)
        boxes.append(np.array([o["box"] for o in truth], np.float32).reshape(-1, 4))
        classes.append(np.array([CLASSES.index(o["class"]) for o in truth], np.int64))
    return frames, boxes, classes
