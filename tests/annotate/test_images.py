"""annotate on real photographs: folders, globs and files -> annotated images + annotations.jsonl, resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from edge_app.annotate.images import JSONL_NAME, annotate_images, split_inputs
from edge_app.cli import main
from edge_app.engine_dir import EngineDir
from edge_app.errors import UserError
from edge_app.frames.labellers import make_labeller
from edge_app.runtime import open_engine
from tests.helpers import PHOTOS, photos


@pytest.fixture()
def photo_tree(tmp_path: Path) -> Path:
    """Real photographs in a nested folder, one of them twice under one name, plus a corrupt 'photo'."""
    root = tmp_path / "in"
    files = photos(root / "a")
    (root / "b").mkdir()
    shutil.copy(files[0], root / "b" / files[0].name)
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines()]


def test_a_folder_of_photographs_is_annotated_with_relative_names(
    tiny_engine: Path, photo_tree: Path, tmp_path: Path
) -> None:
    videos, images = split_inputs([str(photo_tree)])
    assert videos == [] and len(images) == len(PHOTOS) + 2
    out = tmp_path / "out"
    with open_engine(tiny_engine, "onnxruntime", "fp32", "cpu") as eng:
        r = annotate_images(make_labeller(eng, "classify"), images, out, batch=4)
    assert r.written == len(PHOTOS) + 1 and r.unreadable == [str(photo_tree / "b" / "broken.jpg")]
    for name in PHOTOS:
        got = cv2.imread(str(out / "a" / name))
        assert got is not None and got.shape == cv2.imread(str(photo_tree / "a" / name)).shape
    assert (out / "b" / PHOTOS[0]).is_file()  # the same name in another folder keeps its own place
    lines = _lines(out / JSONL_NAME)
    assert sorted(x["image"] for x in lines) == sorted(str(i.path) for i in images if i.path.name != "broken.jpg")
    names = set(EngineDir(tiny_engine).load_meta().labels)
    for x in lines:
        assert len(x["labels"]) == 3 and all(lab["class"] in names and 0 <= lab["score"] <= 1 for lab in x["labels"])


def test_resume_skips_the_photographs_already_done(tiny_engine: Path, photo_tree: Path, tmp_path: Path) -> None:
    _, images = split_inputs([str(photo_tree / "a")])
    out = tmp_path / "out"
    with open_engine(tiny_engine, "onnxruntime", "fp32", "cpu") as eng:
        lab = make_labeller(eng, "classify")
        annotate_images(lab, images[:2], out)
        with open(out / JSONL_NAME, "a") as f:
            f.write('{"image": "torn')  # a crash in the middle of a line
        r = annotate_images(lab, images, out, resume=True)
    assert r.skipped == 2 and r.written == len(images) - 2
    lines = _lines(out / JSONL_NAME)
    assert len(lines) == len(images) == len({x["image"] for x in lines})


def test_globs_and_bad_inputs(photo_tree: Path, tmp_path: Path) -> None:
    _, images = split_inputs([str(photo_tree / "a" / "*.png")])
    assert {i.path.suffix for i in images} == {".png"} and all(i.rel == Path(i.path.name) for i in images)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="folder '.*empty' holds no video or image files"):
        split_inputs([str(tmp_path / "empty")])
    with pytest.raises(UserError, match="pattern '.*\\*.gif' matches no video or image files"):
        split_inputs([str(photo_tree / "*.gif")])
    with pytest.raises(UserError, match="input '.*nothing.jpg' does not exist"):
        split_inputs([str(tmp_path / "nothing.jpg")])


def test_cli_annotates_photographs_and_fails_when_none_decodes(
    tiny_engine: Path, photo_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert (
        main(
            [
                "annotate",
                str(photo_tree / "a"),
                "--engine",
                str(tiny_engine),
                "--out",
                str(out),
                "--no-progress",
                "--backend",
                "onnxruntime",
            ]
        )
        == 0
    )
    assert f"{len(PHOTOS)} images: annotated {len(PHOTOS)}, 0 unreadable" in capsys.readouterr().out
    assert len(_lines(out / JSONL_NAME)) == len(PHOTOS)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    assert (
        main(["annotate", str(bad), "--engine", str(tiny_engine), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    )
    assert "none of the 1 images could be decoded" in capsys.readouterr().err
    assert (
        main(["annotate", str(photo_tree / "a"), "--engine", str(tiny_engine), "--out", str(tmp_path / "x.mp4")]) == 2
    )
    assert "is one video file but the inputs include" in capsys.readouterr().err
