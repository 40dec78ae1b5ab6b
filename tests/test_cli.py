"""The command line: every user error is one sentence on stderr, exit code 2, and no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_tiny_video

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=300
    )


def assert_user_error(r: subprocess.CompletedProcess, match: str) -> None:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    import re

    assert re.search(match, r.stderr), r.stderr


def test_help_lists_commands() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for c in ("demo", "train", "export", "annotate"):
        assert c in r.stdout


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "--data", "/nonexistent/ds"], "dataset folder '/nonexistent/ds' does not exist"),
        (["train", "--arch", "resnet19"], "unknown architecture 'resnet19'"),
        (["train", "--epochs", "0"], "must be at least 1"),
        (["export", "/nonexistent.pt", "--name", "x"], "checkpoint '/nonexistent.pt' does not exist"),
        (["annotate", "/nonexistent.mp4", "--engine", "/nonexistent"], "engine folder '/nonexistent' does not exist"),
    ],
)
def test_bad_input_is_one_clear_sentence(args, match) -> None:
    r = run_cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert match in r.stderr, r.stderr


def test_annotate_loop_errors_name_the_flag_not_the_field(tiny_engine, tmp_path) -> None:
    video = write_tiny_video(tmp_path / "in.mp4", frames=2)
    for args, flag, field in (
        (["--top-k", "0"], "--top-k 0 must be at least 1", "top_k"),
        (["--batch", "0"], "--batch 0 must be at least 1", "batch 0"),
        (["--mode", "tiles", "--tiles", "40x2"], "--tiles 40x2 needs 1 to 32 columns and rows", "grid"),
    ):
        r = run_cli(
            "annotate", str(video), "--engine", str(tiny_engine), "--out", str(tmp_path / "o"), "--no-progress", *args
        )
        assert_user_error(r, "^error: " + re.escape(flag))
        assert field not in r.stderr.replace(flag, "")


def test_single_class_folder_and_wrong_weights(tmp_path) -> None:
    import cv2
    import numpy as np
    import torch

    from edge_app.models import create_model

    (tmp_path / "ds" / "cat").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "ds" / "cat" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert_user_error(run_cli("train", "--data", str(tmp_path / "ds")), "only one class")
    (tmp_path / "ds" / "dog").mkdir()
    for c in ("cat", "dog"):
        for i in range(4):
            cv2.imwrite(str(tmp_path / "ds" / c / f"{i}.png"), np.full((8, 8, 3), i * 40, np.uint8))
    torch.save(create_model("resnet50", 3).state_dict(), tmp_path / "r50.pth")
    assert_user_error(
        run_cli(
            "train",
            "--data",
            str(tmp_path / "ds"),
            "--weights",
            str(tmp_path / "r50.pth"),
            "--out",
            str(tmp_path / "o"),
        ),
        r"do not fit resnet18 .*these weights fit --arch resnet50",
    )


def test_not_a_checkpoint(tmp_path) -> None:
    p = tmp_path / "model.pt"
    p.write_text("definitely not a checkpoint")
    assert_user_error(run_cli("export", str(p), "--name", "x", "--engines", str(tmp_path)), "not a readable checkpoint")


def test_annotate_writes_video_and_jsonl(tiny_engine, tmp_path) -> None:
    import json

    video = write_tiny_video(tmp_path / "in.mp4", frames=7)
    out = tmp_path / "out" / "ann.mp4"
    r = run_cli("annotate", str(video), "--engine", str(tiny_engine), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "annotated 7 frames" in r.stdout
    lines = [json.loads(s) for s in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [ln["frame"] for ln in lines] == list(range(7))
    assert lines[0]["labels"][0]["class"] and "inference" in lines[0]["timings_ms"]
    import cv2

    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7


def test_annotate_unreadable_video_and_unwritable_output(tiny_engine, tmp_path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    assert_user_error(
        run_cli("annotate", str(bad), "--engine", str(tiny_engine), "--out", str(tmp_path / "o.mp4")),
        "cannot read video",
    )
    video = write_tiny_video(tmp_path / "in.mp4", frames=3)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert_user_error(
        run_cli("annotate", str(video), "--engine", str(tiny_engine), "--out", str(blocker / "o.mp4")),
        "cannot write to folder",
    )
