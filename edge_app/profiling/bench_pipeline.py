"""``bench --pipeline SOURCE``: the whole frame loop (capture, preprocess, inference, postprocess, overlay,
write) per variant, so a user sees where the time goes and what frame rate each backend x precision gives.

The loop is the real one (:class:`edge_app.frames.pipeline.Pipeline`, three threads), writing an annotated video
to a temporary folder. Variants take turns of ``max(--slice, 1 s)`` (each turn reopens the source, so a
turn must be long next to that), after a warm-up run of ``--warmup`` seconds each, until every variant has
looped for ``--duration`` seconds and written ``--iterations`` frames. Files are looped, so a short clip
serves any duration. Stage statistics of all turns are pooled per variant.

Before its turns, each variant also runs every stage alone on the source's first frames
(:mod:`edge_app.profiling.stages`): the report then holds each stage's wall and CPU ms per frame, the frame
rate the cores allow for that CPU sum, and the loop's share of it (``loop_efficiency``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.frames.modes.base import check_mode_task
from edge_app.profiling.bench import bench_header
from edge_app.profiling.config import BenchConfig
from edge_app.profiling.machine import machine_line
from edge_app.profiling.measure import progress_bar, progress_ticker
from edge_app.profiling.report import LOOP_STAGES, pipeline_table, stages_alone_table, write_pipeline_report
from edge_app.profiling.results import STAT_KEYS, LoopResult, PipelineBenchReport, StageCosts, add_ratios
from edge_app.profiling.stages import measure_stages, no_frames
from edge_app.profiling.variants import accuracy_of, agreement_of, open_variants, runnable_variants
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Variant
from edge_app.timing import RollingStats

if TYPE_CHECKING:
    from edge_app.frames.pipeline import Pipeline, PipelineReport

MIN_TURN_S = 1.0  # each turn reopens the source and starts three threads: keep that small next to the turn
STAGE_FRAMES = 60  # frames each stage runs alone on (held in memory: 60 720p frames are 166 MB)


@dataclass
class LoopCase:
    """One variant at one batch size: its engine and the statistics pooled over its turns."""

    variant: Variant
    engine: Engine
    batch: int
    window: int
    mode: str = "classify"
    stats: dict[str, RollingStats] = field(default_factory=dict)
    seconds: float = 0.0
    frames: int = 0
    dropped: int = 0
    turns: int = 0
    warmup_s: float = 0.0
    warmup_frames: int = 0

    def done(self, cfg: BenchConfig) -> bool:
        return self.seconds >= cfg.duration and self.frames >= cfg.iterations


def _turn(case: LoopCase, source: str, seconds: float, workdir: Path) -> tuple[PipelineReport, Pipeline]:
    """One run of the real frame loop for ``seconds``; returns (report, the Pipeline with its timer)."""
    from edge_app.frames.pipeline import Pipeline, PipelineConfig
    from edge_app.video.sinks import VideoFileSink
    from edge_app.video.sources import open_source

    src = open_source(source, loop=True)
    try:
        w, h = src.size
        if not (w and h):  # a source that learns its size from the first frame
            first = next(iter(src))
            h, w = first.image.shape[:2]
            src.close()
            src = open_source(source, loop=True)
        sink = VideoFileSink(workdir / f"{case.variant.key}-b{case.batch}.mp4", src.fps or 30.0, (w, h))
    except BaseException:
        src.close()
        raise
    # The mode with its default settings: the bench times the loop, not a mode's options.
    from edge_app.frames.labellers import make_labeller

    lab = make_labeller(case.engine, case.mode)
    p = Pipeline(lab, src, [sink], PipelineConfig(batch=case.batch, duration=seconds))
    rep = p.run()
    if rep.frames_written == 0:
        raise no_frames(source)
    return rep, p


def _measure_turn(case: LoopCase, source: str, seconds: float, workdir: Path) -> None:
    rep, p = _turn(case, source, seconds, workdir)
    case.seconds += rep.seconds
    case.frames += rep.frames_written
    case.dropped += rep.frames_dropped
    case.turns += 1
    for name, st in p.timer.stats.items():
        case.stats.setdefault(name, RollingStats(case.window)).merge(st)


def _stages_alone(case: LoopCase, source: str, workdir: Path) -> StageCosts:
    from edge_app.frames.labellers import make_labeller

    labeller = make_labeller(case.engine, case.mode)
    try:
        return measure_stages(labeller, source, case.batch, workdir, frames=max(STAGE_FRAMES, 2 * case.batch))
    finally:
        labeller.close()


def _result(c: LoopCase, meta: EngineMeta, alone: StageCosts | None = None) -> LoopResult:
    """The record of one variant's pooled turns (its speed-up is filled in by ``add_ratios``)."""
    summ = {name: s.run_summary() for name, s in c.stats.items()}
    # The loop's own stages first, in loop order, then what the engine reported (h2d/compute/d2h).
    stages = {n: {k: summ[n][k] for k in STAT_KEYS} for n in LOOP_STAGES if n in summ}
    stages.update({n: {k: s[k] for k in STAT_KEYS} for n, s in summ.items() if n not in stages and n != "end_to_end"})
    e2e = summ.get("end_to_end")
    return LoopResult(
        variant=c.variant.key,
        backend=c.variant.backend,
        precision=c.variant.precision,
        device=c.engine.device,
        description=c.engine.description,
        batch=c.batch,
        frames=c.frames,
        seconds=c.seconds,
        fps=c.frames / c.seconds if c.seconds > 0 else float("nan"),
        dropped=c.dropped,
        turns=c.turns,
        warmup_s=c.warmup_s,
        warmup_frames=c.warmup_frames,
        stages_ms=stages,
        end_to_end_ms={k: e2e[k] for k in STAT_KEYS} if e2e else {},
        percentiles_exact=all(s["exact"] for s in summ.values()),
        accuracy_top1=accuracy_of(meta, c.variant),
        agreement_fp32=agreement_of(meta, c.variant),
        loop_mode=c.mode,
        stages_alone=alone,
    )


def run_pipeline_bench(
    engine_path: str | Path, source: str, cfg: BenchConfig, out: str | Path, mode: str = "classify"
) -> PipelineBenchReport:
    """Time the whole frame loop on ``source`` for every variant in ``mode`` (its default settings), and each
    stage alone; write bench.json and the stacked-bar PNG; return the report (with ``files`` filled in)."""
    from edge_app.video.sources import open_source

    ed = EngineDir(engine_path)
    meta = ed.load_meta()
    open_source(source).close()  # a bad source is a one-sentence error before any engine is loaded
    check_mode_task(mode, meta)  # and so is a mode that does not run this engine's task
    variants, skipped = runnable_variants(ed, cfg)
    turn_s = max(cfg.slice_s, MIN_TURN_S)
    engines: list[tuple[Variant, Engine]] = []
    results: list[LoopResult] = []
    bar = None
    try:
        open_variants(ed, variants, cfg, engines)
        total = len(cfg.batches) * len(engines) * (cfg.warmup + max(cfg.duration, turn_s))
        bar = progress_bar(cfg.progress, total, "bench --pipeline")
        tick = progress_ticker(bar)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            for b in cfg.batches:
                cases = [LoopCase(v, eng, b, cfg.window, mode) for v, eng in engines]
                alone: dict[int, StageCosts] = {}
                for c in cases:
                    if cfg.warmup > 0:
                        rep, _ = _turn(c, source, cfg.warmup, Path(tmp))
                        c.warmup_s, c.warmup_frames = rep.seconds, rep.frames_written
                        tick(rep.seconds)
                    alone[id(c)] = _stages_alone(c, source, Path(tmp))
                active = list(cases)
                while active:
                    for c in list(active):
                        before = c.seconds
                        _measure_turn(c, source, min(turn_s, max(cfg.duration - c.seconds, 0.0)) or turn_s, Path(tmp))
                        tick(c.seconds - before)
                        if c.done(cfg):
                            active.remove(c)
                results.extend(_result(c, meta, alone.get(id(c))) for c in cases)
        wall = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
        for _, eng in engines:
            eng.close()
    report = PipelineBenchReport(
        **bench_header(ed, meta, cfg, "pipeline", wall).header_fields(),
        source=source,
        source_name=Path(source).name or source,
        loop_mode=mode,
        turn_s=turn_s,
        results=tuple(add_ratios(results)),
        skipped=tuple(skipped),
    )
    return write_pipeline_report(report, Path(out))


def print_pipeline_report(report: PipelineBenchReport) -> None:
    """Print the machine, the per-stage table, what was left out and where the files went."""
    cfg = report.config
    print(machine_line(report.machine))
    print(
        f"engine: {report.engine} ({report.arch}, {report.input}); mode {report.loop_mode}; "
        f"source: {report.source}; warm-up {cfg.warmup:g} s, then {cfg.duration:g} s or {cfg.iterations} frames "
        f"per variant, in turns of {report.turn_s:g} s"
    )
    print(pipeline_table(report))
    if any(r.stages_alone is not None for r in report.results):
        print(stages_alone_table(report))
    print(
        "the loop runs in four threads (capture | preprocess+inference+postprocess | overlay+write | H.264 encoder), "
        "so stages overlap; 'allows' is cores x 1000 / the CPU ms the stages take alone, 'loop' the frames/s the "
        "threaded loop reached, and 'share' their ratio"
    )
    for s in report.skipped:
        print(f"not measured: {s.variant} ({s.reason})")
    print("wrote " + ", ".join(report.files.values()))
