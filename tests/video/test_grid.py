"""The tiled view of many sources: DeepStream's grid shape, tiles in place, inner sinks not flooded."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.frames.results import FrameResult
from edge_app.video.grid import GridSink, grid_shape


class _Keep:
    takes_images = True

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.closed = False

    def write(self, frame: np.ndarray, result: object) -> None:
        self.frames.append(frame)

    def key_pressed(self) -> int:
        return -1

    def update_stats(self, stats: dict) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (9, (3, 3))])
def test_grid_shape_follows_deepstreams_tiler(n: int, shape: tuple[int, int]) -> None:
    assert grid_shape(n) == shape


def test_each_source_lands_in_its_own_tile() -> None:
    inner = _Keep()
    g = GridSink([inner], 4, size=(200, 100), fps=0)
    for sid, val in enumerate((50, 100, 150, 200)):
        g.write(np.full((30, 60, 3), val, np.uint8), FrameResult(0, 0.0, source_id=sid))
    grid = inner.frames[-1]
    assert grid.shape == (100, 200, 3)
    assert [int(grid[25, 50, 0]), int(grid[25, 150, 0]), int(grid[75, 50, 0]), int(grid[75, 150, 0])] == [
        50,
        100,
        150,
        200,
    ]
    g.close()
    assert inner.closed


def test_the_grid_is_composed_at_most_once_per_interval() -> None:
    inner = _Keep()
    g = GridSink([inner], 3, size=(90, 30), fps=1.0)
    for sid in (0, 1, 2, 0, 1):
        g.write(np.zeros((10, 10, 3), np.uint8), FrameResult(0, 0.0, source_id=sid))
    assert len(inner.frames) == 1


def test_a_source_outside_the_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="source id 3 is outside a grid of 2 sources"):
        GridSink([_Keep()], 2).write(np.zeros((4, 4, 3), np.uint8), FrameResult(0, 0.0, source_id=3))
