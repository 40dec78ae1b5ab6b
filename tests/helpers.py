"""Helpers shared by tests (import as `from tests.helpers import ...`)."""

from __future__ import annotations

from pathlib import Path


def write_tiny_video(path: Path, frames: int = 12, size: tuple[int, int] = (160, 120), fps: float = 10.0) -> Path:
    """A small synthetic video for loop tests."""
    from edge_app.data.synthetic import VideoConfig, write_video

    write_video(path, VideoConfig(width=size[0], height=size[1], fps=fps, frames=frames, objects=2, min_size=30, max_size=50))
    return path
