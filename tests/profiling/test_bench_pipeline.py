"""`bench --pipeline`: the real frame loop per variant, pooled stage statistics and the stacked-bar report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.errors import UserError
from edge_app.profiling.bench import BenchConfig
from edge_app.profiling.bench_pipeline import run_pipeline_bench
from edge_app.profiling.report import stages_alone_table
from edge_app.profiling.results import PipelineBenchReport
from edge_app.profiling.stages import ALONE_STAGES, cores
from tests.helpers import write_tiny_video


def test_pipeline_bench_times_every_stage_of_every_variant(tiny_engine: Path, tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4", frames=8)  # shorter than the run: the source is looped
    cfg = BenchConfig(
        warmup=0.2, duration=0.6, iterations=12, progress=False, backends=("torch", "onnxruntime"), precisions=("fp32",)
    )
    rep = run_pipeline_bench(tiny_engine, str(video), cfg, tmp_path / "out")
    assert isinstance(rep, PipelineBenchReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.turn_s = 0.0  # type: ignore[misc]
    assert [r.variant for r in rep.results] == ["torch-fp32", "ort-fp32"]
    for r in rep.results:
        assert list(r.stages_ms)[:6] == ["capture", "preprocess", "inference", "postprocess", "overlay", "write"]
        assert r.frames >= cfg.iterations and r.seconds >= cfg.duration and r.warmup_frames > 0
        assert r.fps == pytest.approx(r.frames / r.seconds)
        inf = r.stages_ms["inference"]
        assert 0 < inf["min"] <= inf["p50"] <= inf["p99"] <= inf["max"]
        assert r.end_to_end_ms["p50"] >= inf["min"]
        # Each stage alone, in loop order, with the bound their CPU sum sets and the loop's share of it.
        alone = r.stages_alone
        assert alone is not None
        assert [s for s in alone.stages if s != "decode_pyav"] == list(ALONE_STAGES)
        assert alone.frames == 8 and alone.cores == cores()
        assert all(st["wall"] > 0 and st["cpu"] >= 0 for st in alone.stages.values())
        assert alone.cpu_sum_ms == pytest.approx(sum(alone.stages[s]["cpu"] for s in ALONE_STAGES))
        assert alone.cpu_bound_fps == pytest.approx(cores() * 1e3 / alone.cpu_sum_ms)
        assert r.loop_efficiency == pytest.approx(r.fps / alone.cpu_bound_fps)
        assert r.loop_mode == "classify"
    assert rep.results[0].speedup == pytest.approx(1.0)
    assert rep.files == {
        "stages_png": str(tmp_path / "out" / "pipeline_stages.png"),
        "json": str(tmp_path / "out" / "bench.json"),
    }
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved["mode"] == "pipeline" and saved["source"] == str(video) and saved["loop_mode"] == "classify"
    # bench.json keeps the keys (and their order) it had when the report was a dict
    assert list(saved)[-8:] == [
        "threads",
        "source",
        "source_name",
        "loop_mode",
        "turn_s",
        "results",
        "skipped",
        "files",
    ]
    assert list(saved["results"][0])[-4:] == ["loop_mode", "stages_alone", "loop_efficiency", "speedup"]
    first_alone = rep.results[0].stages_alone
    assert first_alone is not None
    assert saved["results"][0]["stages_alone"]["cpu_bound_fps"] == pytest.approx(first_alone.cpu_bound_fps)
    assert (tmp_path / "out" / "pipeline_stages.png").read_bytes()[:4] == b"\x89PNG"
    table = stages_alone_table(rep)
    assert f"decode ({first_alone.decoder})" in table and "sum, " in table and "encode" in table


def test_pipeline_bench_cli_runs_the_mode_asked_for_and_prints_the_stage_table(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4", frames=6)
    args = ["bench", str(tiny_engine), "--pipeline", str(video), "--mode", "tiles", "--backends", "onnxruntime"]
    rc = main([*args, "--precisions", "fp32", "--warmup", "0", "--duration", "0.3", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0 and "mode tiles;" in out and "allows fps" in out and "share" in out
    assert json.loads((tmp_path / "o" / "bench.json").read_text())["results"][0]["loop_mode"] == "tiles"


def test_pipeline_bench_mode_errors_are_one_sentence(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4", frames=4)
    rc = main(["bench", str(tiny_engine), "--pipeline", str(video), "--mode", "detect", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --mode 'detect'") and "task 'classify'" in err
    assert "Traceback" not in err
    rc = main(["bench", str(tiny_engine), "--mode", "tiles", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--mode tiles applies to the frame loop; add --pipeline SOURCE" in err


def test_pipeline_bench_bad_source_is_one_sentence(
    tiny_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["bench", str(tiny_engine), "--pipeline", str(tmp_path / "nope.mp4"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: source ") and "was not found" in err and "Traceback" not in err


def test_pipeline_bench_needs_a_runnable_variant(tiny_engine: Path, tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4", frames=4)
    with pytest.raises(UserError, match=r"no variant of .* can run here"):
        run_pipeline_bench(
            tiny_engine, str(video), BenchConfig(progress=False, precisions=("fp16",), device="cpu"), tmp_path
        )
