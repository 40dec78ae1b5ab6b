"""Resume continues only the same run (its record beside the outputs); finished outputs are not overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_app.annotate.run_record import record_path
from edge_app.annotate.video import annotate_config, annotate_video, check_outputs
from edge_app.errors import UserError
from edge_app.frames.labellers import make_labeller
from tests.frames.fakes import FakeEngine
from tests.helpers import write_tiny_video


def _first_part(tmp_path: Path, mode: str = "classify") -> tuple[Path, Path, Path]:
    video = write_tiny_video(tmp_path / "in.mp4", frames=10, size=(96, 64))
    out, jl = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    annotate_video(make_labeller(FakeEngine(), mode), video, out, jl, annotate_config(max_frames=4, progress=False))
    return video, out, jl


def test_resume_with_another_mode_is_refused_naming_the_difference(tmp_path: Path) -> None:
    video, out, jl = _first_part(tmp_path)
    before = jl.read_bytes()
    rec = json.loads(record_path(jl).read_text())
    assert rec["mode"]["name"] == "classify" and rec["engine"]["name"] == "fake" and rec["input"]["size"] > 0
    with pytest.raises(UserError, match=r"cannot resume '.*a.jsonl'.*mode.name classify -> tiles.*--overwrite"):
        annotate_video(
            make_labeller(FakeEngine(), "tiles"), video, out, jl, annotate_config(progress=False), resume=True
        )
    assert jl.read_bytes() == before  # nothing already written is lost


def test_resume_with_other_mode_settings_or_another_input_is_refused(tmp_path: Path) -> None:
    video, out, jl = _first_part(tmp_path)
    lab = make_labeller(FakeEngine(), "classify", make_labeller(FakeEngine()).config.__class__(top_k=1))
    with pytest.raises(UserError, match=r"mode.settings.top_k \d+ -> 1"):
        annotate_video(lab, video, out, jl, annotate_config(progress=False), resume=True)
    other = write_tiny_video(tmp_path / "other.mp4", frames=10, size=(96, 64), fps=12.0)
    with pytest.raises(UserError, match=r"input\.(head_sha256|name|size)"):
        annotate_video(make_labeller(FakeEngine()), other, out, jl, annotate_config(progress=False), resume=True)


def test_resume_of_the_same_run_continues_and_old_outputs_without_a_record_still_resume(tmp_path: Path) -> None:
    video, out, jl = _first_part(tmp_path)
    r = annotate_video(make_labeller(FakeEngine()), video, out, jl, annotate_config(progress=False), resume=True)
    assert r.frames_restored == 4 and r.frames_written == 10
    record_path(jl).unlink()  # as written before records existed
    annotate_video(make_labeller(FakeEngine()), video, out, jl, annotate_config(max_frames=4, progress=False))
    record_path(jl).unlink()
    r = annotate_video(make_labeller(FakeEngine()), video, out, jl, annotate_config(progress=False), resume=True)
    assert r.frames_written == 10 and record_path(jl).is_file()  # checked from now on


def test_outputs_holding_results_are_refused_without_overwrite(tmp_path: Path) -> None:
    _, out, jl = _first_part(tmp_path)
    with pytest.raises(
        UserError, match=r"'.*a.mp4' already holds the results of a run \(and 1 more outputs\); pass --overwrite"
    ):
        check_outputs([out, jl], resume=False, overwrite=False)
    check_outputs([out, jl], resume=False, overwrite=True)
    check_outputs([out, jl], resume=True, overwrite=False)
    check_outputs([tmp_path / "new.mp4"], resume=False, overwrite=False)
    with pytest.raises(UserError, match="pass one of them, not both"):
        check_outputs([out], resume=True, overwrite=True)
