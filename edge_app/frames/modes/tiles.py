"""``tiles``: a classifier over a grid of overlapping square tiles (one or more scales) -> boxes.

Every tile of every frame of the step goes into ONE batched engine call; confident non-background tiles
become boxes, merged and de-duplicated by class-wise NMS (:func:`~edge_app.frames.postprocess.tiles_to_boxes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_app.errors import FieldError, shown
from edge_app.frames.modes.base import Labeller, ModeConfig, ModeOption, register_mode
from edge_app.frames.postprocess import BACKGROUND, tiles_to_boxes
from edge_app.frames.preprocess import crop_tiles, parse_grid, parse_scales, tile_boxes
from edge_app.frames.results import Label

MAX_GRID = 32  # 32x32 tiles at scale 1 is already ~1000 engine inputs per frame


@dataclass(frozen=True)
class TileConfig(ModeConfig):
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
        try:
            grid = tuple(int(v) for v in self.grid)
        except (TypeError, ValueError):
            raise FieldError("grid", repr(self.grid), "is not (columns, rows); e.g. (3, 3)") from None
        try:
            scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            raise FieldError("scales", repr(self.scales), "is not a list of numbers; e.g. (1.0, 0.6)") from None
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "scales", scales)
        if len(grid) != 2 or min(grid) < 1 or max(grid) > MAX_GRID:
            raise FieldError("grid", "x".join(map(str, grid)), f"needs 1 to {MAX_GRID} columns and rows; e.g. 3x3")
        if not scales or any(not 0.0 < s <= 1.0 for s in scales):
            raise FieldError("scales", shown(scales) or "(none)", "is out of range; use values in (0, 1], e.g. 1.0,0.6")
        if not 0.0 <= self.conf <= 1.0:
            raise FieldError("conf", shown(self.conf), "is not a probability; use a value between 0 and 1, e.g. 0.5")
        if not 0.0 <= self.iou <= 1.0:
            raise FieldError(
                "iou", shown(self.iou), "is not an overlap fraction; use a value between 0 and 1, e.g. 0.5"
            )
        if not 0.0 <= self.min_overlap < 0.9:
            raise FieldError("min_overlap", shown(self.min_overlap), "is out of range; use a value in [0, 0.9)")
        if not 0.0 < self.box_scale <= 1.0:
            raise FieldError("box_scale", shown(self.box_scale), "is out of range; use a value in (0, 1]")
        if self.min_votes < 1:
            raise FieldError(
                "min_votes", shown(self.min_votes), "must be at least 1 (1 = every confident tile is a box)"
            )

    @classmethod
    def cli_options(cls) -> tuple[ModeOption, ...]:
        """``--tiles``, ``--scales``, ``--conf`` (shared with detect) and ``--iou``; the rest keep their measured defaults."""
        return (
            ModeOption("--tiles", "grid", "grid of square tiles at scale 1.0", parse_grid, "COLSxROWS", _show_grid),
            ModeOption("--scales", "scales", "tile scales, comma-separated", parse_scales, "S,S,..."),
            ModeOption("--conf", "conf", "minimum probability of a tile that makes a box", float, "SCORE"),
            ModeOption("--iou", "iou", "class-wise NMS IoU threshold", float, "IOU"),
        )


def _show_grid(grid: tuple[int, int]) -> str:
    """(3, 3) -> "3x3", the way ``--tiles`` is written."""
    return "x".join(map(str, grid))


@register_mode("tiles")
class TileLabeller(Labeller):
    """Grid of overlapping square tiles -> boxes (the engine needs a background class).

    Every tile of every frame in the step goes into one engine call.
    """

    config_type = TileConfig
    task = "classify"  # a classifier with a background class, run per tile
    outputs = ("logits",)
    config: TileConfig

    def setup(self) -> None:
        """Tiles need a background class to tell 'no object here'; the layouts are cached per frame size."""
        if BACKGROUND not in self.names:
            raise FieldError(
                "mode",
                "'tiles'",
                f"needs a '{BACKGROUND}' class, but engine '{self.engine.meta.name}' has classes "
                f"{', '.join(self.names)}; use mode 'classify' or train with background images",
            )
        self._layout: dict[tuple[int, int], np.ndarray] = {}

    def tiles_for(self, size: tuple[int, int]) -> np.ndarray:
        """The (N,4) tile boxes for frames of ``size`` = (width, height), computed once per size."""
        if size not in self._layout:
            c = self.config
            self._layout[size] = tile_boxes(size, c.grid, c.scales, c.min_overlap)
        return self._layout[size]

    @property
    def tiles_per_frame(self) -> int | None:
        """Tiles per frame when every frame so far had one size (None before the first or with several sizes)."""
        return len(next(iter(self._layout.values()))) if len(self._layout) == 1 else None

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """All tiles of all frames cut and resized into one batch; the context is each frame's tile boxes."""
        layouts = [self.tiles_for((f.shape[1], f.shape[0])) for f in frames]
        batch = np.empty((sum(len(b) for b in layouts), self.spec.height, self.spec.width, 3), np.uint8)
        s = 0
        for f, boxes in zip(frames, layouts):
            crop_tiles(f, boxes, self.spec, out=batch[s : s + len(boxes)])
            s += len(boxes)
        return batch, layouts

    def decode(self, outputs: dict[str, np.ndarray], layouts: list[np.ndarray]) -> list[list[Label]]:
        """Each frame's slice of the tile logits -> boxes after voting, merging and class-wise NMS."""
        logits, c = outputs["logits"], self.config
        out, s = [], 0
        for boxes in layouts:
            out.append(
                tiles_to_boxes(
                    logits[s : s + len(boxes)], boxes, self.names, c.conf, c.iou, c.box_scale, c.merge, c.min_votes
                )
            )
            s += len(boxes)
        return out
