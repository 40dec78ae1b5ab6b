"""Helpers shared by tests (import as `from tests.helpers import ...`)."""

from __future__ import annotations

from pathlib import Path


def write_tiny_video(path: Path, frames: int = 12, size: tuple[int, int] = (160, 120), fps: float = 10.0) -> Path:
    """A small synthetic video for loop tests."""
    from edge_app.data.synthetic import VideoConfig, write_video

    write_video(
        path, VideoConfig(width=size[0], height=size[1], fps=fps, frames=frames, objects=2, min_size=30, max_size=50)
    )
    return path


def count_frames(path: Path) -> int:
    """Frames OpenCV's FFmpeg decodes from a video file (0 for an unreadable one)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# Real photographs shipped inside scikit-image's wheel (installed without its dependencies by scripts/setup.sh,
# and never imported): for tests and evaluation only, never training material.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg")


def photo_dir() -> Path | None:
    """The folder of scikit-image's sample data, or None when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if all((d / p).is_file() for p in PHOTOS) else None


def photos(dest: Path) -> list[Path]:
    """Copy the real photographs into ``dest`` (skip the test when scikit-image's data is missing)."""
    import shutil

    import pytest

    src = photo_dir()
    if src is None:
        pytest.skip("scikit-image's sample photographs are not installed (scripts/setup.sh installs them)")
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(src / p, dest / p)) for p in PHOTOS]
