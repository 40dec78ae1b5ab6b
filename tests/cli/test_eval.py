"""`run.py eval <what>`: each sub-command parses its flags, makes one library call, prints its lines; bad input
is one sentence naming the flag. The evaluations themselves are tested in tests/eval (none runs long here)."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pytest

from edge_app.cli import build_parser, main
from edge_app.frames.labellers import TileConfig


def parse(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(["eval", *args])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["eval", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_each_evaluation_is_a_sub_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse().what is None
    rc, _, err = run(capsys)
    assert (
        rc == 2
        and err == "error: name what to evaluate: run.py eval heldout|modes|boxes|track (see run.py eval --help)\n"
    )
    for what in ("heldout", "modes", "boxes", "track"):
        assert parse(*((what, "--engine", "e") if what == "heldout" else (what,))).what == what


def test_heldout_parses_and_calls_the_library(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edge_app.eval.heldout as heldout

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        heldout, "run_heldout", lambda *a, **k: calls.append((a, k)) or SimpleNamespace(report="R", speed=None)
    )
    monkeypatch.setattr(heldout, "format_heldout", lambda report, speed: [f"report {report}"])
    rc, out, _ = run(capsys, "heldout", "--engine", "engines/det", "--scenes", "7", "--frames", "3", "--no-speed")
    assert rc == 0 and out == "report R\n"
    assert calls == [(("engines/det", 7, 3), {"speed": False, "json_out": None})]


def test_heldout_bad_input(capsys: pytest.CaptureFixture[str], tiny_engine) -> None:
    rc, _, err = run(capsys, "heldout", "--engine", "/nonexistent", "--no-speed")
    assert rc == 2 and err.startswith("error: engine folder '/nonexistent' does not exist")
    rc, _, err = run(capsys, "heldout", "--engine", str(tiny_engine), "--no-speed")
    assert rc == 2 and "is not a detector engine" in err and "Traceback" not in err


def test_modes_parses_tiles_flags_and_calls_the_library(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edge_app.eval.modes as modes

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(modes, "run_modes", lambda *a: calls.append(a) or {})
    monkeypatch.setattr(modes, "format_modes", lambda scores: ["scores"])
    rc, out, _ = run(
        capsys, "modes", "--detector", "d", "--classifier", "c", "--frames", "5", "--tiles", "4x4", "--conf", "0.6"
    )
    assert rc == 0 and out == "scores\n"
    assert calls == [("d", "c", 5, "auto", "auto", TileConfig(grid=(4, 4), conf=0.6))]


def test_modes_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "modes", "--frames", "0")
    assert rc == 2 and err == "error: --frames 0 scores nothing; give at least 1, e.g. 60\n"


def test_boxes_parses_tiles_and_tuning_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edge_app.eval.boxes as boxes

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(boxes, "run_boxes", lambda *a: calls.append(a) or "R")
    monkeypatch.setattr(boxes, "format_boxes", lambda r: [f"boxes {r}"])
    args = ("boxes", "--video", "v.mp4", "--votes", "3", "--overlap", "0.3", "--box-scale", "0.5", "--no-merge")
    rc, out, _ = run(capsys, *args, "--match-iou", "0.4", "--stride", "2", "--backend", "onnxruntime")
    assert rc == 0 and out == "boxes R\n"
    tiles = TileConfig(min_votes=3, min_overlap=0.3, box_scale=0.5, merge=False)
    assert calls == [("engines/demo", "v.mp4", None, tiles, 0.4, 0, 2, "onnxruntime", "auto")]


def test_boxes_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "boxes", "--tiles", "40x2")
    assert rc == 2 and err == "error: --tiles 40x2 needs 1 to 32 columns and rows; e.g. 3x3\n"
    rc, _, err = run(capsys, "boxes", "--votes", "0")
    assert rc == 2 and err.startswith("error: --votes 0 must be at least 1")


def test_track_parses_and_calls_the_library(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edge_app.eval.track as track

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(track, "run_track_eval", lambda *a, **k: calls.append((a, k)) or "T")
    monkeypatch.setattr(track, "format_track_eval", lambda r: [f"track {r}"])
    rc, out, _ = run(capsys, "track", "--recipe", "test", "--trackers", "iou, bytetrack", "--no-bench", "--out", "o")
    assert rc == 0 and out == "track T\n"
    assert calls == [(("test", None, ("iou", "bytetrack")), {"out_dir": "o", "bench": False})]


def test_track_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "track", "--recipe", "nope", "--no-bench")
    assert rc == 2 and err == "error: tracking recipe 'nope' is unknown; choose one of heldout, test\n"
    rc, _, err = run(capsys, "track", "--trackers", ",")
    assert rc == 2 and err.startswith("error: --trackers ',' names no tracker")
