"""``bench``: model-only latency and throughput of every backend x precision of an engine folder, in one run.

In the manner of trtexec: a time-based warm-up, then ``duration`` seconds or ``iterations`` calls, whichever
is longer, every variant interleaved with the others (:mod:`.measure`). The variants come from the backend
descriptors (:mod:`.variants`), the records are :mod:`.results`, and the table, ``bench.json`` and PNG plots
are :mod:`.report`. This module runs them in order and is the front door: the names callers use
(``BenchConfig``, ``run_bench``, ``print_report``, ...) are importable from here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta, now_iso
from edge_app.profiling.config import BenchConfig, parse_batches, parse_list
from edge_app.profiling.machine import machine_info, machine_line, thread_counts
from edge_app.profiling.measure import Case, measure, progress_bar, progress_ticker
from edge_app.profiling.report import results_table, write_report
from edge_app.profiling.results import BASELINE, BenchHeader, BenchReport, CaseResult, Skipped, add_ratios
from edge_app.profiling.variants import (
    accuracy_of,
    agreement_of,
    batch_use,
    discover_variants,
    engine_for_use,
    open_variant,
    open_variants,
    runnable_variants,
)
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Variant, backends
from edge_app.timing import StageTimer


def case_result(c: Case, meta: EngineMeta) -> CaseResult:
    """The record of one measured case (its speed-up is filled in by ``add_ratios``)."""
    lat = c.timer.stats["latency"]
    summ = lat.run_summary()
    keys = ("min", "p50", "p90", "p99", "max", "mean")
    return CaseResult(
        variant=c.variant.key,
        backend=c.variant.backend,
        precision=c.variant.precision,
        device=c.engine.device,
        description=c.engine.description,
        model_file=c.engine.model_file,
        batch=c.batch,
        latency_ms={k: summ[k] for k in keys},
        percentiles_exact=summ["exact"],
        throughput_ips=c.calls * c.batch / c.measured_s if c.measured_s > 0 else float("nan"),
        calls=c.calls,
        measured_s=c.measured_s,
        slices=c.slices,
        warmup_s=c.warmup_s,
        warmup_calls=c.warmup_calls,
        stages_ms={name: {k: s[k] for k in keys} for name, s in c.timer.summary().items() if name != "latency"},
        accuracy_top1=accuracy_of(meta, c.variant),
        agreement_fp32=agreement_of(meta, c.variant),
        histogram=lat.hist.to_dict(),
    )


def bench_header(ed: EngineDir, meta: EngineMeta, cfg: BenchConfig, mode: str, wall: float) -> BenchHeader:
    """The fields every bench report starts with: engine, settings, machine and thread counts."""
    return BenchHeader(
        engine=ed.path,
        name=meta.name,
        arch=meta.arch,
        input=f"{meta.input.height}x{meta.input.width}",
        created=now_iso(),
        mode=mode,
        baseline=BASELINE,
        wall_s=wall,
        config=cfg,  # frozen: the report keeps the settings it ran with
        machine=machine_info(),
        threads=thread_counts(cfg.threads),
    )


def run_bench(engine_path: str | Path, cfg: BenchConfig, out: str | Path) -> BenchReport:
    """Benchmark every variant of ``engine_path``; write bench.json and plots under ``out``; return the report."""
    ed = EngineDir(engine_path)
    meta = ed.load_meta()  # raises a UserError for a folder without a model
    variants, skipped = runnable_variants(ed, cfg)
    spec = meta.input
    rng = np.random.default_rng(cfg.seed)
    results: list[CaseResult] = []
    engines: list[tuple[Variant, Engine]] = []
    reopened: dict[tuple[str, str], Engine] = {}
    bar = None
    try:
        open_variants(ed, variants, cfg, engines)
        bar = progress_bar(cfg.progress, len(cfg.batches) * len(engines) * (cfg.warmup + cfg.duration), "bench")
        tick = progress_ticker(bar)
        t0 = time.perf_counter()
        for b in cfg.batches:
            images = rng.integers(0, 256, (b, spec.height, spec.width, 3), dtype=np.uint8)
            use = batch_use(b)
            cases = [
                Case(v, engine_for_use(ed.path, v, eng, use, cfg, reopened), b, StageTimer(window=cfg.window))
                for v, eng in engines
            ]
            measure(cases, images, cfg, tick)
            results.extend(case_result(c, meta) for c in cases)
        wall = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
        for eng in [e for _, e in engines] + list(reopened.values()):
            eng.close()
    header = bench_header(ed, meta, cfg, "model", wall)
    report = BenchReport(**header.header_fields(), results=tuple(add_ratios(results)), skipped=tuple(skipped))
    return write_report(report, Path(out))


def backend_notes(measured: set[str]) -> list[str]:
    """The descriptor ``notes`` of the backends in ``measured``, in registry order."""
    return [n for b in backends() if b.name in measured for n in b.notes]


def print_report(report: BenchReport) -> None:
    """Print the machine, the table, the measured backends' notes, what was left out and where the files went."""
    cfg = report.config
    print(machine_line(report.machine))
    print(
        f"engine: {report.engine} ({report.arch}, {report.input}); warm-up {cfg.warmup:g} s, then "
        f"{cfg.duration:g} s or {cfg.iterations} calls per variant and batch, interleaved in {cfg.slice_s:g} s slices; "
        + "threads: "
        + ", ".join(f"{k} {v}" for k, v in report.threads.items() if v)
    )
    print(results_table(report.results, report.baseline))
    for note in backend_notes({r.backend for r in report.results}):
        print(note)
    for s in report.skipped:
        print(f"not measured: {s.variant} ({s.reason})")
    if not any(r.variant == BASELINE for r in report.results):
        print(f"no {BASELINE} baseline in this run, so no speed-up column")
    print("wrote " + ", ".join(report.files.values()))


__all__ = [
    "BASELINE",
    "BenchConfig",
    "BenchHeader",
    "BenchReport",
    "Case",
    "CaseResult",
    "Skipped",
    "Variant",
    "accuracy_of",
    "add_ratios",
    "bench_header",
    "discover_variants",
    "measure",
    "open_variant",
    "parse_batches",
    "parse_list",
    "print_report",
    "run_bench",
]
