"""Frames -> labels: the two labelling modes of the frame loop, each one batched engine call per step.

``classify`` resizes each whole frame to the model input and keeps the top-k classes. ``tiles`` cuts a grid
of overlapping square tiles (one or more scales) out of each frame, runs every tile of every frame of the
step in ONE batched ``Engine.infer`` call, and turns confident non-background tiles into boxes merged by
class-wise NMS. The pipeline, the detection evaluation and ``bench`` all call these same classes, so the
numbers they report come from the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge_app.errors import UserError
from edge_app.frames.postprocess import BACKGROUND, Label, tiles_to_boxes, topk
from edge_app.frames.preprocess import crop_tiles, parse_grid, tile_boxes, to_batch
from edge_app.runtime.base import Engine

MODES = ("classify", "tiles")


@dataclass
class TileConfig:
    """Tiles mode settings; the defaults are the ones measured on the synthetic video (README, tiles)."""

    grid: tuple[int, int] = (3, 3)  # columns x rows at scale 1.0
    # Tile sides as fractions of the grid's own side (512 px for 3x3 on 720p): 384, 307 and 256 px tiles,
    # so each object of the synthetic video (160-280 px) fills 0.5-0.85 of some tile, as in training.
    scales: tuple[float, ...] = (0.75, 0.6, 0.5)
    min_overlap: float = 0.25  # neighbouring tiles share at least this fraction, so no object is cut by all
    # A tile is a candidate box when its best non-background class has at least this probability.
    conf: float = 0.7
    # Class-wise NMS threshold. The merged boxes of one object are offset from each other by a fraction of
    # a tile, so they overlap little; 0.2 removes those duplicates (0.3: precision 0.82 instead of 0.85).
    iou: float = 0.2
    # The model saw objects filling 0.45-0.85 of a crop, so a positive tile's object is ~0.6 of its side.
    box_scale: float = 0.6
    merge: bool = True  # average the boxes of overlapping same-class tiles before NMS
    # A box needs this many overlapping tiles that agree on its class: an object is seen by several
    # tiles, a misreading of a cut-off object by one tile rarely repeats in its neighbours.
    min_votes: int = 2

    def __post_init__(self) -> None:
        self.grid = tuple(int(v) for v in self.grid)  # type: ignore[assignment]
        self.scales = tuple(float(s) for s in self.scales)
        if len(self.grid) != 2 or min(self.grid) < 1 or max(self.grid) > 32:
            raise UserError(f"--tiles {self.grid[0]}x{self.grid[-1]} is not a usable grid; use 1 to 32 columns and rows, e.g. --tiles 3x3")
        if not self.scales or any(not 0.0 < s <= 1.0 for s in self.scales):
            raise UserError(f"--scales {','.join(f'{s:g}' for s in self.scales)} is out of range; use values in (0, 1], e.g. --scales 1.0,0.6")
        if not 0.0 <= self.conf <= 1.0:
            raise UserError(f"--conf {self.conf:g} is not a probability; use a value between 0 and 1, e.g. --conf 0.5")
        if not 0.0 <= self.iou <= 1.0:
            raise UserError(f"--iou {self.iou:g} is not an overlap fraction; use a value between 0 and 1, e.g. --iou 0.5")
        if not 0.0 <= self.min_overlap < 0.9:
            raise UserError(f"tile overlap {self.min_overlap:g} is out of range; use a value in [0, 0.9)")
        if not 0.0 < self.box_scale <= 1.0:
            raise UserError(f"box scale {self.box_scale:g} is out of range; use a value in (0, 1]")
        if self.min_votes < 1:
            raise UserError(f"--votes {self.min_votes} must be at least 1 (1 = every confident tile is a box)")

    @classmethod
    def from_strings(cls, tiles: str = "3x3", scales: str = "0.75,0.6,0.5", **kw: float | bool) -> "TileConfig":
        """Build from command-line text such as ``--tiles 3x3 --scales 1.0,0.6``; bad text is a UserError."""
        try:
            grid = parse_grid(tiles)
        except ValueError as e:
            raise UserError(f"--tiles: {e}") from None
        try:
            sc = tuple(float(s) for s in scales.split(",") if s.strip())
        except ValueError:
            raise UserError(f"--scales '{scales}' is not a comma-separated list of numbers; write it like 1.0,0.6") from None
        return cls(grid=grid, scales=sc, **kw)  # type: ignore[arg-type]


@dataclass
class StepTimings:
    """Milliseconds of one labelling step (a batch of frames), split by stage."""

    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)  # the engine's own split, e.g. h2d/compute/d2h


class Labeller:
    """Common part: an engine and a maximum batch. ``label(frames)`` -> one label list per frame."""

    mode = "base"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.spec = engine.meta.input
        self.names = list(engine.meta.labels)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """The logits of one engine call, or several when the engine caps the batch size."""
        return self.engine.infer_batched(batch)["logits"]

    def label(self, frames: list[np.ndarray]) -> tuple[list[list[Label]], StepTimings]:
        """Labels for each frame, and this step's stage timings."""
        raise NotImplementedError


class ClassifyLabeller(Labeller):
    """Whole frame -> top-k classes, no boxes."""

    mode = "classify"

    def __init__(self, engine: Engine, top_k: int = 3) -> None:
        super().__init__(engine)
        if top_k < 1:
            raise UserError(f"--top-k {top_k} must be at least 1; e.g. --top-k 3")
        self.top_k = top_k

    def label(self, frames: list[np.ndarray]) -> tuple[list[list[Label]], StepTimings]:
        """Top-k labels per frame from one batched call."""
        t = StepTimings()
        t0 = time.perf_counter()
        batch = to_batch(frames, self.spec)
        t1 = time.perf_counter()
        logits = self._infer(batch)
        t2 = time.perf_counter()
        labels = topk(logits, self.names, self.top_k)
        t3 = time.perf_counter()
        t.preprocess, t.inference, t.postprocess = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
        t.extra = dict(getattr(self.engine, "last_timings", {}) or {})
        return labels, t


class TileLabeller(Labeller):
    """Grid of square tiles -> boxes; every tile of every frame in the step goes into one engine call."""

    mode = "tiles"

    def __init__(self, engine: Engine, cfg: TileConfig = TileConfig()) -> None:
        super().__init__(engine)
        if BACKGROUND not in self.names:
            raise UserError(f"tiles mode needs a '{BACKGROUND}' class, but this engine's classes are "
                            f"{', '.join(self.names)}; use --mode classify or train with background images")
        self.cfg = cfg
        self._layout: dict[tuple[int, int], np.ndarray] = {}

    def tiles_for(self, size: tuple[int, int]) -> np.ndarray:
        """The (N,4) tile boxes for frames of ``size`` = (width, height), computed once per size."""
        if size not in self._layout:
            self._layout[size] = tile_boxes(size, self.cfg.grid, self.cfg.scales, self.cfg.min_overlap)
        return self._layout[size]

    def label(self, frames: list[np.ndarray]) -> tuple[list[list[Label]], StepTimings]:
        """Boxes per frame; one engine call for all tiles of all ``frames``."""
        t = StepTimings()
        t0 = time.perf_counter()
        layouts = [self.tiles_for((f.shape[1], f.shape[0])) for f in frames]
        batch = np.empty((sum(len(b) for b in layouts), self.spec.height, self.spec.width, 3), np.uint8)
        s = 0
        for f, boxes in zip(frames, layouts):
            crop_tiles(f, boxes, self.spec, out=batch[s:s + len(boxes)])
            s += len(boxes)
        t1 = time.perf_counter()
        logits = self._infer(batch)
        t2 = time.perf_counter()
        out, s = [], 0
        c = self.cfg
        for boxes in layouts:
            out.append(tiles_to_boxes(logits[s:s + len(boxes)], boxes, self.names, c.conf, c.iou, c.box_scale, c.merge,
                                      c.min_votes))
            s += len(boxes)
        t3 = time.perf_counter()
        t.preprocess, t.inference, t.postprocess = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
        t.extra = dict(getattr(self.engine, "last_timings", {}) or {})
        return out, t


def make_labeller(engine: Engine, mode: str = "classify", top_k: int = 3, tiles: TileConfig | None = None) -> Labeller:
    """The labeller for ``mode`` ('classify' or 'tiles')."""
    if mode == "classify":
        return ClassifyLabeller(engine, top_k)
    if mode == "tiles":
        return TileLabeller(engine, tiles or TileConfig())
    raise UserError(f"--mode {mode} is unknown; choose one of {', '.join(MODES)}")
