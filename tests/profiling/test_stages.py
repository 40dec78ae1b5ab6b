"""Each loop stage alone: what it costs per frame and what the cores allow for the sum."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.errors import UserError
from edge_app.frames.labellers import make_labeller
from edge_app.profiling.stages import ALONE_STAGES, StageCosts, cores, measure_stages
from tests.frames.fakes import FakeEngine
from tests.helpers import write_tiny_video


def _costs(cpu_ms: float, paced: float | None = None) -> StageCosts:
    stages = {s: {"wall": cpu_ms, "cpu": cpu_ms} for s in ALONE_STAGES}
    stages["decode_pyav"] = {"wall": 99.0, "cpu": 99.0}  # a comparison row: never part of the sum
    return StageCosts(frames=10, cores=2, stages=stages, paced_fps=paced)


def test_the_bound_is_cores_over_the_cpu_sum_and_a_live_sources_rate_caps_it() -> None:
    c = _costs(1.0)
    assert c.cpu_sum_ms == pytest.approx(len(ALONE_STAGES))
    assert c.cpu_bound_fps == pytest.approx(2000 / len(ALONE_STAGES))
    assert _costs(1.0, paced=30.0).cpu_bound_fps == 30.0  # a camera gives 30 frames/s, whatever the cores
    assert _costs(100.0, paced=30.0).cpu_bound_fps == pytest.approx(2000 / (100 * len(ALONE_STAGES)))
    assert c.to_dict()["cpu_bound_fps"] == c.cpu_bound_fps


def _reader_of(uri: Path) -> str:
    from edge_app.video.sources import open_source

    src = open_source(str(uri))
    try:
        return type(src).__name__
    finally:
        src.close()


def test_measure_stages_on_a_file_runs_every_stage_on_the_same_frames(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4", frames=9)
    eng = FakeEngine()
    costs = measure_stages(make_labeller(eng, "classify"), str(video), batch=4, workdir=tmp_path, frames=20)
    assert costs.frames == 9 and costs.cores == cores() and costs.paced_fps is None
    assert costs.decoder == _reader_of(video)  # the source's own reader, named in the table
    assert [s for s in costs.stages if s != "decode_pyav"] == list(ALONE_STAGES)
    assert eng.calls == [4, 4, 1]  # the loop's batch size, every frame once
    assert all(v["wall"] > 0 for v in costs.stages.values())
    assert (tmp_path / "stages-alone.mp4").stat().st_size > 0  # the encoder really ran
    assert len((tmp_path / "stages-alone.jsonl").read_text().splitlines()) == 9


def test_measure_stages_on_a_live_source_is_capped_at_its_rate(tmp_path: Path) -> None:
    lab = make_labeller(FakeEngine(), "classify")
    costs = measure_stages(lab, "synthetic?frames=4", batch=1, workdir=tmp_path, frames=4)
    assert costs.paced_fps == 30.0 and costs.cpu_bound_fps <= 30.0 and costs.decoder == "SyntheticSource"


def test_a_source_without_frames_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    lab = make_labeller(FakeEngine(), "classify")
    with pytest.raises(UserError, match="gave no frames; check it plays"):
        measure_stages(lab, str(tmp_path / "imgs"), batch=1, workdir=tmp_path, frames=0)
