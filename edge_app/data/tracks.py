"""A procedural tracking video with ground-truth identities, seeded: what tracker scores are measured on.

Objects (the shape classes of :mod:`edge_app.data.synthetic`) travel in *legs*: each enters at a frame edge,
crosses the frame (mostly left <-> right, so they cross each other and the counting line), sometimes stops a
while, leaves through another edge, stays away, and re-enters later with the same identity. Later objects are
drawn over earlier ones, so crossing paths occlude; each ground-truth row carries its visibility.

Two recipes, never mixed:

- :data:`TEST_RECIPE` (seed 7): the one tests and tracker tuning use.
- :data:`HELDOUT_RECIPE` (seed 20261207, larger frame, more and faster objects): the held-out video the README's
  numbers come from; no setting was chosen on it.

Ground truth is written as MOTChallenge ``gt.txt`` (``frame,id,left,top,width,height,1,1,visibility``, frames
from 1; class 1 and flag 1 so MOTChallenge evaluators score every row) beside ``tracks.json`` (the recipe,
each identity's class, the counting line and each row's leg for counting crossings in view).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import cv2
import numpy as np

from edge_app.data.synthetic import SHAPES, shape_polygon, textured_background
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_text, ensure_writable_dir

MIN_IN_FRAME = 0.4  # a box less than this much inside the frame is a sliver no detector reports: no GT row


@dataclass(frozen=True)
class TrackRecipe:
    """How the tracking video is made; every choice is drawn from ``seed``."""

    width: int = 640
    height: int = 360
    frames: int = 300
    fps: float = 30.0
    objects: int = 8
    min_size: float = 40.0  # bounding-circle diameter, px
    max_size: float = 80.0
    min_speed: float = 1.5  # px per frame
    max_speed: float = 5.0
    horizontal: float = 0.75  # share of legs from the left / right edge (they cross the vertical counting line)
    stop_chance: float = 0.35  # chance a leg pauses inside the frame
    stop_frames: tuple[int, int] = (10, 45)
    away_frames: tuple[int, int] = (5, 60)  # frames out of view before the next leg
    seed: int = 7
    # Counting line x1,y1,x2,y2: the vertical middle, full height (every left <-> right leg crosses it once).
    line: tuple[float, float, float, float] | None = None

    def counting_line(self) -> tuple[float, float, float, float]:
        """The recipe's line, or the vertical middle of the frame."""
        if self.line is not None:
            return self.line
        x = (self.width - 1) / 2
        return (x, 0.0, x, float(self.height - 1))


TEST_RECIPE = TrackRecipe()
HELDOUT_RECIPE = TrackRecipe(
    width=800, height=450, frames=450, objects=11, min_size=34.0, max_size=90.0, max_speed=6.0, seed=20261207
)


class GtBox(NamedTuple):
    """One ground-truth row: identity (from 1), class name, clipped box, visible fraction, leg number."""

    gt_id: int
    cls: str
    box: tuple[float, float, float, float]
    visibility: float
    leg: int


@dataclass
class TrackTruth:
    """The whole video's truth: per frame, its rows and every object's pose (for rendering)."""

    recipe: TrackRecipe
    classes: dict[int, str]  # gt id -> class
    frames: list[list[GtBox]] = field(default_factory=list)
    poses: list[list[tuple[int, float, float, float, float]]] = field(default_factory=list)  # id, cx, cy, size, angle
    colours: dict[int, tuple[float, float, float]] = field(default_factory=dict)


@dataclass
class _Obj:
    gid: int
    cls: str
    size: float
    spin: float
    angle: float
    x: float = 0.0
    y: float = 0.0
    vx: float = 0.0
    vy: float = 0.0
    away: int = 0  # frames left out of view (0: in a leg)
    stop_at: int = -1  # leg frame at which to pause
    stop_left: int = 0
    leg_frame: int = 0
    leg: int = 0


def _edge_point(rng: np.random.Generator, edge: int, r: TrackRecipe, size: float) -> tuple[float, float]:
    """A point just outside edge 0 left, 1 right, 2 top, 3 bottom (the object slides in from there)."""
    m = size / 2 + 1
    if edge < 2:
        return (-m if edge == 0 else r.width + m), rng.uniform(0.1, 0.9) * r.height
    return rng.uniform(0.1, 0.9) * r.width, (-m if edge == 2 else r.height + m)


def _start_leg(o: _Obj, rng: np.random.Generator, r: TrackRecipe, inside: bool) -> None:
    if rng.random() < r.horizontal:
        edge = int(rng.integers(0, 2))
        target_edge = 1 - edge
    else:
        edge = int(rng.integers(2, 4))
        target_edge = 5 - edge
    if inside:  # the first leg of an object in view from frame 0
        o.x, o.y = rng.uniform(0.15, 0.85) * r.width, rng.uniform(0.15, 0.85) * r.height
    else:
        o.x, o.y = _edge_point(rng, edge, r, o.size)
    tx, ty = _edge_point(rng, target_edge, r, o.size)
    speed = rng.uniform(r.min_speed, r.max_speed)
    dist = math.hypot(tx - o.x, ty - o.y)
    o.vx, o.vy = (tx - o.x) / dist * speed, (ty - o.y) / dist * speed
    o.leg_frame = 0
    o.leg += 1
    o.stop_at = int(rng.uniform(0.3, 0.7) * dist / speed) if rng.random() < r.stop_chance else -1
    o.stop_left = int(rng.integers(*r.stop_frames))


def _out_of_view(o: _Obj, r: TrackRecipe) -> bool:
    m = o.size / 2 + 2
    return o.x < -m or o.x > r.width + m or o.y < -m or o.y > r.height + m


def _visible_fraction(box: np.ndarray, above: list[np.ndarray]) -> float:
    """Share of ``box`` not covered by the boxes drawn over it (rasterised at 1 px)."""
    x1, y1, x2, y2 = (int(math.floor(box[0])), int(math.floor(box[1])), int(math.ceil(box[2])), int(math.ceil(box[3])))
    w, h = max(1, x2 - x1), max(1, y2 - y1)
    covered = np.zeros((h, w), bool)
    for b in above:
        a1, b1 = max(0, int(b[0]) - x1), max(0, int(b[1]) - y1)
        a2, b2 = min(w, int(math.ceil(b[2])) - x1), min(h, int(math.ceil(b[3])) - y1)
        if a2 > a1 and b2 > b1:
            covered[b1:b2, a1:a2] = True
    return float(1.0 - covered.mean())


def simulate(recipe: TrackRecipe) -> TrackTruth:
    """The ground truth of ``recipe`` (no pixels): fast enough for tests and the noisy-detection evaluation."""
    r = recipe
    rng = np.random.default_rng([r.seed, 0])
    truth = TrackTruth(r, {})
    objs = []
    for i in range(r.objects):
        cls = SHAPES[i % len(SHAPES)]
        o = _Obj(i + 1, cls, rng.uniform(r.min_size, r.max_size), rng.uniform(-0.04, 0.04), rng.uniform(0, 2 * np.pi))
        if i % 2 == 0:
            _start_leg(o, rng, r, inside=True)
        else:
            o.away = int(rng.integers(0, r.frames // 3 + 1))
        truth.classes[o.gid] = cls
        truth.colours[o.gid] = tuple(float(v) for v in rng.uniform(0, 255, 3))  # type: ignore[assignment]
        objs.append(o)
    for _ in range(r.frames):
        poses, boxes = [], []
        for o in objs:
            if o.away > 0:
                o.away -= 1
                if o.away == 0:
                    _start_leg(o, rng, r, inside=False)
                continue
            pts = shape_polygon(o.cls, o.x, o.y, o.size, o.angle)
            poses.append((o.gid, o.x, o.y, o.size, o.angle))
            boxes.append((o, np.concatenate([pts.min(0), pts.max(0)])))
            # Move: a paused object stands still (and keeps its ID through the pause); then it goes on.
            if o.leg_frame == o.stop_at and o.stop_left > 0:
                o.stop_left -= 1
            else:
                o.x += o.vx
                o.y += o.vy
                o.leg_frame += 1
            o.angle += o.spin
            if o.leg_frame > 3 and _out_of_view(o, r):
                o.away = int(rng.integers(*r.away_frames))
        rows = []
        full = [b for _, b in boxes]
        for k, (o, b) in enumerate(boxes):
            clip = np.array([max(0, b[0]), max(0, b[1]), min(r.width - 1, b[2]), min(r.height - 1, b[3])])
            area = (b[2] - b[0]) * (b[3] - b[1])
            if clip[2] <= clip[0] or clip[3] <= clip[1]:
                continue
            if (clip[2] - clip[0]) * (clip[3] - clip[1]) < MIN_IN_FRAME * area:
                continue
            vis = _visible_fraction(clip, full[k + 1 :])
            rows.append(GtBox(o.gid, o.cls, tuple(round(float(v), 2) for v in clip), round(vis, 3), o.leg))  # type: ignore[arg-type]
        truth.frames.append(rows)
        truth.poses.append(poses)
    return truth


def render(truth: TrackTruth) -> Iterator[np.ndarray]:
    """The BGR frames of ``truth``: a textured background, each object in its own colour, sensor noise."""
    r = truth.recipe
    rng = np.random.default_rng([r.seed, 1])
    bg = textured_background(rng, r.height, r.width)
    noise = [rng.normal(0, 4, (r.height, r.width, 3)).astype(np.int16) for _ in range(4)]
    shift = 4  # sub-pixel precision for anti-aliased polygons
    for t, poses in enumerate(truth.poses):
        frame = bg.copy()
        for gid, cx, cy, size, angle in poses:
            pts = shape_polygon(truth.classes[gid], cx, cy, size, angle)
            ipts = np.round(pts * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
            col = truth.colours[gid]
            cv2.fillPoly(frame, [ipts], col, cv2.LINE_AA, shift)
            cv2.polylines(frame, [ipts], True, tuple(v * 0.4 for v in col), 2, cv2.LINE_AA, shift)
        yield np.clip(frame.astype(np.int16) + noise[t % len(noise)], 0, 255).astype(np.uint8)


def gt_mot_text(truth: TrackTruth) -> str:
    """MOTChallenge ground truth: ``frame,id,left,top,width,height,1,1,visibility`` rows, frames from 1."""
    rows = []
    for t, frame in enumerate(truth.frames):
        for g in frame:
            x1, y1, x2, y2 = g.box
            rows.append(f"{t + 1},{g.gt_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,1,{g.visibility:.3f}")
    return "\n".join(rows) + "\n"


def write_track_set(folder: str | Path, recipe: TrackRecipe = TEST_RECIPE, video: bool = True) -> dict[str, Path]:
    """Write ``video.mp4`` (if ``video``), ``gt.txt`` and ``tracks.json`` into ``folder``; returns their paths.

    The video is written with OpenCV's ``mp4v`` (any detector engine reads it; browsers do not play it).
    """
    out = ensure_writable_dir(folder)
    truth = simulate(recipe)
    paths = {"gt": out / "gt.txt", "meta": out / "tracks.json"}
    if video:
        paths["video"] = out / "video.mp4"
        tmp = out / ".video.tmp.mp4"
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), recipe.fps, (recipe.width, recipe.height))
        if not writer.isOpened():
            raise UserError(f"OpenCV cannot write MP4 video '{tmp}'; install an opencv-python build with FFmpeg")
        try:
            for frame in render(truth):
                writer.write(frame)
        finally:
            writer.release()
        tmp.replace(paths["video"])
    atomic_write_text(paths["gt"], gt_mot_text(truth))
    legs = [[[g.gt_id, g.leg] for g in frame] for frame in truth.frames]
    meta = {
        "kind": "edge_app-tracks",
        "recipe": asdict(recipe),
        "classes": {str(k): v for k, v in truth.classes.items()},
        "line": list(recipe.counting_line()),
        "legs": legs,
    }
    atomic_write_text(paths["meta"], json.dumps(meta) + "\n")
    return paths
