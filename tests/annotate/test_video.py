"""`annotate`: files and folders -> videos + JSON lines, batched, summary, --resume, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from edge_app.annotate.video import AnnotateResult, annotate_config, annotate_video, completed_results
from edge_app.cli import main as cli_main
from edge_app.frames.labellers import make_labeller
from tests.frames.fakes import FakeEngine
from tests.helpers import count_frames, write_tiny_video


def frames_in(jsonl: Path) -> list[int]:
    return [json.loads(s)["frame"] for s in jsonl.read_text().splitlines()]


def test_folder_of_videos_with_summary(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    write_tiny_video(d / "a.mp4", frames=6)
    write_tiny_video(d / "b.mp4", frames=4)
    (d / "notes.txt").write_text("not a video")
    code = cli_main(
        [
            "annotate",
            str(d),
            "--engine",
            str(tiny_engine),
            "--out",
            str(tmp_path / "out"),
            "--mode",
            "tiles",
            "--batch",
            "3",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"a\.mp4: annotated 6 frames \(6 read, 0 failed to decode\)", out)
    assert "total: 2 files, 10 frames read, 10 written, 0 failed to decode" in out
    assert frames_in(tmp_path / "out" / "b.jsonl") == [0, 1, 2, 3]
    assert count_frames(tmp_path / "out" / "a.mp4") == 6
    assert f"  {d / 'notes.txt'}: not a video or image file (.txt)" in out  # every input passed over is named


def test_a_finished_output_is_not_overwritten_without_a_flag(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    video = write_tiny_video(tmp_path / "in.mp4", frames=8)
    out = tmp_path / "o" / "in.mp4"
    args = ["annotate", str(video), "--engine", str(tiny_engine), "--out", str(out), "--no-progress"]
    assert cli_main(args) == 0
    finished = out.with_suffix(".jsonl").read_bytes()
    capsys.readouterr()
    assert cli_main([*args, "--max-frames", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(r"'.*in.mp4' already holds the results of a run .*; pass --overwrite to replace them", err), err
    assert out.with_suffix(".jsonl").read_bytes() == finished  # nothing written is lost
    assert cli_main([*args, "--max-frames", "3", "--overwrite"]) == 0
    assert frames_in(out.with_suffix(".jsonl")) == [0, 1, 2]
    assert cli_main([*args, "--resume", "--mode", "tiles"]) == 2
    assert re.search(r"cannot resume .*mode.name classify -> tiles", capsys.readouterr().err)


def test_resume_after_a_hard_kill(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    video = write_tiny_video(tmp_path / "in.mp4", frames=12)
    out = tmp_path / "o" / "in.mp4"
    args = ["annotate", str(video), "--engine", str(tiny_engine), "--out", str(out), "--no-progress"]
    assert cli_main([*args, "--max-frames", "5"]) == 0
    first = (tmp_path / "o" / "in.jsonl").read_text().splitlines()
    # A hard kill: the last line torn mid-write and the video never finalised.
    with open(out.with_suffix(".jsonl"), "a") as f:
        f.write(first[-1][:20])
    out.unlink()
    capsys.readouterr()
    assert cli_main([*args, "--resume"]) == 0
    said = capsys.readouterr().out
    assert "annotated 12 frames (12 read, 0 failed to decode, resumed after frame 4)" in said
    lines = (tmp_path / "o" / "in.jsonl").read_text().splitlines()
    assert lines[:5] == first  # the finished lines are kept as they were, inference continued after them
    assert frames_in(out.with_suffix(".jsonl")) == list(range(12))
    assert count_frames(out) == 12
    # Resuming a finished file does nothing.
    assert cli_main([*args, "--resume"]) == 0
    assert "already complete (12 frames" in capsys.readouterr().out


def test_ctrl_c_leaves_matching_video_and_lines_then_resume_completes(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "in.mp4", frames=40, size=(96, 64))
    out, jl = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    cfg = annotate_config(batch=2, progress=False)
    # 20 batches of 20 ms: Ctrl-C during the 3rd leaves the run far from its end when the main thread sees it.
    r = annotate_video(make_labeller(FakeEngine(delay_s=0.02, interrupt_after=3)), video, out, jl, cfg)
    assert isinstance(r, AnnotateResult)
    assert r.stopped_by == "interrupt" and 0 < r.frames_written < 40
    assert frames_in(jl) == list(range(r.frames_written))
    assert count_frames(out) == r.frames_written  # closed properly on interrupt: readable, same frames
    r2 = annotate_video(make_labeller(FakeEngine()), video, out, jl, annotate_config(progress=False), resume=True)
    assert r2.frames_restored == r.frames_written and r2.frames_written == 40
    assert frames_in(jl) == list(range(40)) and count_frames(out) == 40


def test_resume_with_every_line_done_but_the_video_lost_only_redraws_it(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "in.mp4", frames=12)
    out, jl = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    cfg = annotate_config(max_frames=5, progress=False)
    first = annotate_video(make_labeller(FakeEngine()), video, out, jl, cfg)
    assert first.frames_written == 5 and first.inference_ms["p50"] >= 0
    lines = jl.read_text()
    out.unlink()
    eng = FakeEngine()
    r = annotate_video(make_labeller(eng), video, out, jl, cfg, resume=True)
    # The 5 frames asked for are all in the lines: the video is re-drawn from them, no frame is inferred again,
    # and --max-frames still holds (the loop does not run on to the end of the file).
    assert eng.calls == [] and r.report is None and r.inference_ms == {}
    assert (r.frames_restored, r.frames_written, r.stopped_by, r.already_complete) == (5, 5, "max_frames", False)
    assert jl.read_text() == lines and count_frames(out) == 5
    again = annotate_video(make_labeller(eng), video, out, jl, cfg, resume=True)
    assert again.already_complete and again.frames_restored == 5


def test_completed_results_stop_at_a_gap(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    rec = lambda i: json.dumps({"frame": i, "capture_time": 0.0, "labels": [], "timings_ms": {}})  # noqa: E731
    p.write_text("\n".join([rec(0), rec(1), rec(3), rec(4)]) + "\n")
    assert [r.index for r in completed_results(p)] == [0, 1]


@pytest.mark.parametrize(
    "more,extra,match",
    [
        ([], ["--mode", "tiles", "--tiles", "0x3"], r"--tiles 0x3 needs 1 to 32 columns and rows"),
        ([], ["--conf", "2"], r"--conf 2 is not a probability"),
        ([], ["--out", "{tmp}/blocker/o.mp4"], r"cannot write to folder '.*blocker'"),
        (["{tmp}/in.mp4"], ["--out", "{tmp}/one.mp4"], r"--out '.*one.mp4' is one video file but there are 2 inputs"),
    ],
)
def test_bad_input_is_one_sentence(
    more: list[str], extra: list[str], match: str, tiny_engine: Path, tmp_path: Path, capsys
) -> None:
    write_tiny_video(tmp_path / "in.mp4", frames=2)
    (tmp_path / "blocker").write_text("x")
    more, extra = ([e.replace("{tmp}", str(tmp_path)) for e in x] for x in (more, extra))
    code = cli_main(
        ["annotate", str(tmp_path / "in.mp4"), *more, "--engine", str(tiny_engine), "--no-progress", *extra]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert re.search(match, err), err


def test_empty_folder_is_a_user_error(tiny_engine: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert cli_main(["annotate", str(tmp_path / "empty"), "--engine", str(tiny_engine)]) == 2
    assert "holds no video or image files" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "empty")


def test_variable_frame_rate_video_keeps_its_times_in_lines_and_output(tmp_path: Path) -> None:
    from tests.video.conftest import frame_times, make_vfr_video

    times = [0.0, 0.1, 0.2, 1.0, 1.1, 2.5, 2.6, 2.7, 4.0, 4.05]
    video = make_vfr_video(tmp_path / "vfr.mkv", times)
    out, jl = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    r = annotate_video(make_labeller(FakeEngine()), video, out, jl, annotate_config(batch=3, progress=False))
    assert (r.frames_read, r.frames_written, r.frames_failed) == (10, 10, 0)
    lines = [json.loads(s) for s in jl.read_text().splitlines()]
    assert [x["media_time"] for x in lines] == pytest.approx(times, abs=1e-3)
    assert frame_times(out) == pytest.approx(times, abs=2e-3)  # played back at the source's own times
    # Resume re-draws the prefix with the same times.
    jl.write_text("".join(s + "\n" for s in jl.read_text().splitlines()[:4]))
    out.unlink()
    r = annotate_video(make_labeller(FakeEngine()), video, out, jl, annotate_config(progress=False), resume=True)
    assert r.frames_restored == 4 and frame_times(out) == pytest.approx(times, abs=2e-3)
