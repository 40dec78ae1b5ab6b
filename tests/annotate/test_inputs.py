"""annotate's inputs: folders searched recursively and globs, for videos and images alike; every file
passed over is named with the reason."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.annotate.images import find_inputs
from edge_app.errors import UserError
from tests.helpers import write_tiny_video


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "day" / "cam1").mkdir(parents=True)
    (root / "night").mkdir()
    write_tiny_video(root / "day" / "cam1" / "a.mp4", frames=2)
    write_tiny_video(root / "night" / "b.mp4", frames=2)
    cv2.imwrite(str(root / "night" / "p.png"), np.zeros((8, 8, 3), np.uint8))
    (root / "night" / "notes.txt").write_text("hello")
    return root


def test_folders_are_searched_recursively_for_videos_and_images(tree: Path) -> None:
    found = find_inputs([str(tree)])
    assert [p.name for p in found.videos] == ["a.mp4", "b.mp4"]
    assert [i.rel for i in found.images] == [Path("night/p.png")]
    # write_tiny_video leaves its ground truth (a .json) beside each video: named too, with the reason.
    assert (str(tree / "night" / "notes.txt"), "not a video or image file (.txt)") in found.skipped
    assert {Path(p).suffix for p, _ in found.skipped} == {".txt", ".json", ".jsonl"}


def test_a_folder_with_videos_only_in_subfolders_is_not_empty(tree: Path) -> None:
    (tree / "night" / "p.png").unlink()
    assert len(find_inputs([str(tree / "day")]).videos) == 1


def test_globs_find_videos_and_images(tree: Path) -> None:
    assert [p.name for p in find_inputs([str(tree / "**" / "*.mp4")]).videos] == ["a.mp4", "b.mp4"]
    assert str(tree / "night" / "notes.txt") in dict(find_inputs([str(tree / "night" / "*")]).skipped)
    with pytest.raises(UserError, match=r"pattern '.*\*\.gif' matches no video or image files; check it"):
        find_inputs([str(tree / "*.gif")])
