"""Tile geometry (edge_app.frames.preprocess): square tiles that cover the frame, and grid parsing."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.engine_dir import InputSpec
from edge_app.errors import FieldError
from edge_app.frames.labellers import TileConfig
from edge_app.frames.preprocess import crop_tiles, parse_grid, parse_scales, tile_boxes


@pytest.mark.parametrize(
    "size,grid,scales",
    [
        ((1280, 720), (3, 3), (1.0,)),
        ((1280, 720), (3, 3), (1.0, 0.6)),
        ((1920, 1080), (4, 2), (0.75, 0.5)),
        ((641, 359), (2, 2), (1.0,)),
        ((360, 640), (3, 3), (1.0,)),  # portrait
        ((1280, 720), (1, 1), (1.0,)),  # asks for fewer tiles than a square side allows
    ],
)
def test_tiles_are_square_inside_and_cover_every_pixel(size, grid, scales) -> None:
    w, h = size
    boxes = tile_boxes(size, grid, scales)
    assert (boxes[:, 2] - boxes[:, 0] == boxes[:, 3] - boxes[:, 1]).all(), "tiles must be square"
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    side = boxes[:, 2] - boxes[:, 0]
    for s in np.unique(side):  # each scale on its own covers the whole frame
        covered = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in boxes[side == s]:
            covered[y1:y2, x1:x2] = True
        assert covered.all(), f"tiles of side {s} leave pixels uncovered"


def test_3x3_on_16_9_spans_the_width_and_overlaps_more_vertically() -> None:
    boxes = tile_boxes((1280, 720), (3, 3), (1.0,), min_overlap=0.25)
    assert len(boxes) == 9
    side = int(boxes[0, 2] - boxes[0, 0])
    xs, ys = sorted(set(boxes[:, 0])), sorted(set(boxes[:, 1]))
    assert xs[0] == 0 and xs[-1] + side == 1280 and ys[0] == 0 and ys[-1] + side == 720
    overlap_x, overlap_y = side - (xs[1] - xs[0]), side - (ys[1] - ys[0])
    assert overlap_x >= 0.25 * side - 1 and overlap_y > overlap_x


def test_smaller_scale_uses_more_tiles() -> None:
    big = tile_boxes((1280, 720), (3, 3), (1.0,))
    both = tile_boxes((1280, 720), (3, 3), (1.0, 0.5))
    assert len(both) > 2 * len(big)


@pytest.mark.parametrize(
    "text,match",
    [
        ("3", "is not COLSxROWS"),
        ("axb", "is not COLSxROWS"),
    ],
)
def test_bad_grid_text(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_grid(text)


def test_grid_range_is_tile_configs_to_check() -> None:
    # parse_grid reads the form only; the range is validated once, by TileConfig, which names its field.
    assert parse_grid("0x3") == (0, 3)
    with pytest.raises(FieldError, match=r"^grid 0x3 needs 1 to 32 columns and rows"):
        TileConfig(grid=parse_grid("0x3"))


def test_parse_scales() -> None:
    assert parse_scales("1.0, 0.6") == (1.0, 0.6)
    with pytest.raises(ValueError, match=r"tile scales '1.0,big' are not a comma-separated list of numbers"):
        parse_scales("1.0,big")


def test_parse_grid_and_crop_tiles() -> None:
    assert parse_grid("4x2") == (4, 2)
    img = np.zeros((90, 160, 3), np.uint8)
    img[:, 80:] = 255
    boxes = np.array([[0, 0, 80, 80], [80, 0, 160, 80]])
    batch = crop_tiles(img, boxes, InputSpec(32, 32))
    assert batch.shape == (2, 32, 32, 3) and batch[0].max() == 0 and batch[1].min() == 255
