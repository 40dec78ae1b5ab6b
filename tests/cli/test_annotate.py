"""`annotate` end to end on tiny generated videos: outputs, and loop errors that name the flag."""

from __future__ import annotations

import json
import re

from tests.cli.runner import assert_user_error, run_cli
from tests.helpers import write_tiny_video


def test_annotate_loop_errors_name_the_flag_not_the_field(tiny_engine, tmp_path) -> None:
    video = write_tiny_video(tmp_path / "in.mp4", frames=2)
    for args, flag, field in (
        (["--top-k", "0"], "--top-k 0 must be at least 1", "top_k"),
        (["--batch", "0"], "--batch 0 must be at least 1", "batch 0"),
        (["--mode", "tiles", "--tiles", "40x2"], "--tiles 40x2 needs 1 to 32 columns and rows", "grid"),
        (["--conf", "2"], "--conf 2 is not a probability", "conf 2"),
        (["--max-det", "0"], "--max-det 0 must be a whole number of at least 1", "max_det"),
    ):
        r = run_cli(
            "annotate", str(video), "--engine", str(tiny_engine), "--out", str(tmp_path / "o"), "--no-progress", *args
        )
        assert_user_error(r, "^error: " + re.escape(flag))
        assert field not in r.stderr.replace(flag, "")


def test_annotate_writes_video_and_jsonl(tiny_engine, tmp_path) -> None:
    import cv2

    video = write_tiny_video(tmp_path / "in.mp4", frames=7)
    out = tmp_path / "out" / "ann.mp4"
    r = run_cli("annotate", str(video), "--engine", str(tiny_engine), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "annotated 7 frames" in r.stdout
    lines = [json.loads(s) for s in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [ln["frame"] for ln in lines] == list(range(7))
    assert lines[0]["labels"][0]["class"] and "inference" in lines[0]["timings_ms"]
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
