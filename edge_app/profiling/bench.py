"""``bench``: model-only latency and throughput of every backend x precision of an engine folder, in one run.

In the manner of trtexec: a time-based warm-up, then ``duration`` seconds or ``iterations`` calls, whichever
is longer. Variants run **interleaved**: round-robin in short time slices, so a noisy neighbour (5 people
share our 2-core machines) slows every variant alike and the ratios stay fair. Each call is timed on
``perf_counter()``; backends that run on a GPU synchronise before returning, so the clock covers the work.
Results go to a table, ``bench.json`` and PNG plots (edge_app.profiling.report).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.runtime.base import Engine
from edge_app.runtime.registry import Variant, backends, has_variant_file
from edge_app.timing import StageTimer

log = logging.getLogger(__name__)

BASELINE = "torch-fp32"  # the speed-up column divides by this variant: the checkpoint in PyTorch


@dataclass
class BenchConfig:
    """Options of ``bench``; defaults follow trtexec where a CPU does not need more."""

    warmup: float = 1.0  # seconds per variant and batch before measuring (trtexec: 0.2 s; ORT's thread pool and arena need longer on a CPU)
    duration: float = 3.0  # seconds of measured calls per variant and batch (trtexec's default)
    iterations: int = 10  # ... or at least this many calls, whichever takes longer (trtexec's default)
    batches: tuple[int, ...] = (1,)
    slice_s: float = 0.1  # one variant runs this long before the next takes over: short, so noise hits all alike
    backends: tuple[str, ...] | None = None  # None: every installed backend
    precisions: tuple[str, ...] | None = None  # None: every precision with a model file
    device: str = "auto"
    threads: int | None = None  # ONNX Runtime intra-op threads (None: one per core, as `live` runs it)
    dla_core: int | None = None  # TensorRT on Jetson: time the plan built for this DLA core (as `live --dla N`)
    cuda_graphs: bool = False  # TensorRT: replay each call as a CUDA graph (as `live --cuda-graph`)
    window: int = 100_000  # samples kept per variant; percentiles are exact up to this many calls, histogram beyond
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.warmup >= 0:
            raise UserError(
                f"--warmup {self.warmup:g} is negative; give the warm-up in seconds, 0 or more (e.g. --warmup 1)"
            )
        if not self.duration >= 0:
            raise UserError(
                f"--duration {self.duration:g} is negative; give the measuring time in seconds, 0 or more (e.g. --duration 3)"
            )
        if self.iterations < 1:
            raise UserError(f"--iterations {self.iterations} is below 1; give at least 1 measured call per variant")
        if not self.batches:
            raise UserError("--batch is empty; give one or more batch sizes, e.g. --batch 1,8,32")
        for b in self.batches:
            if b < 1:
                raise UserError(
                    f"--batch {b} is not a batch size; use whole numbers of at least 1, e.g. --batch 1,8,32"
                )
        if not self.slice_s > 0:
            raise UserError(f"--slice {self.slice_s:g} must be greater than 0 seconds, e.g. --slice 0.1")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads {self.threads} must be at least 1")
        if self.dla_core is not None and self.dla_core < 0:
            raise UserError(f"--dla {self.dla_core} is not a DLA core; Jetson AGX Orin/Xavier have cores 0 and 1")


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; a bad entry is a UserError that names it."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            b = int(part)
        except ValueError:
            raise UserError(
                f"--batch '{text}': '{part}' is not a whole number; give sizes like --batch 1,8,32"
            ) from None
        if b < 1:
            raise UserError(f"--batch {b} is not a batch size; use whole numbers of at least 1, e.g. --batch 1,8,32")
        if b not in out:
            out.append(b)
    return tuple(out)


def parse_list(text: str | None, choices: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    """``"a,b"`` -> ``("a", "b")`` checked against ``choices``; None stays None (meaning all)."""
    if text is None:
        return None
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    for s in items:
        if s not in choices:
            raise UserError(f"{option} '{s}' is not known; choose from {', '.join(choices)}")
    return items


@dataclass(frozen=True)
class Skipped:
    """A variant (or a whole backend) that was not measured, and why."""

    variant: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def discover_variants(ed: EngineDir, cfg: BenchConfig) -> tuple[list[Variant], list[Skipped]]:
    """Every variant this machine can run for ``ed`` (from each backend's descriptor), and the ones left out with why."""
    wanted = [b for b in backends() if cfg.backends is None or b.name in cfg.backends]
    devices = ("cuda", "cpu") if cfg.device == "auto" else ("cuda",) if cfg.device.startswith("cuda") else (cfg.device,)
    skipped: list[Skipped] = []
    variants: list[Variant] = []
    seen: set[str] = set()
    for b in wanted:
        reasons = []
        for dev in (d for d in devices if d in b.devices):
            ok, why = b.available(dev)
            if not ok:
                reasons.append(f"{dev}: {why}")
                continue
            for v in b.variants(ed, dev):
                if cfg.precisions is not None and v.precision not in cfg.precisions:
                    continue
                if v.key in seen:  # the same key on a later device (torch-fp32 on the CPU after CUDA): keep the first
                    continue
                seen.add(v.key)
                if not has_variant_file(ed, v):
                    skipped.append(Skipped(v.key, f"{v.file} is missing" + (f"; {v.hint}" if v.hint else "")))
                    continue
                variants.append(v)
            reasons = []  # one usable device is enough: the others are not "skipped", just absent
        if reasons:
            why = "; ".join(reasons)
            if cfg.backends is not None:  # named explicitly: the user expects it, so say how to get it
                raise UserError(f"--backends {b.name}: {why}; {b.install_hint}, or leave {b.name} out of --backends")
            skipped.append(Skipped(b.name, why))
    variants.sort(key=lambda v: v.key != BASELINE)  # the baseline first, then registry order (stable sort)
    return variants, skipped


def accuracy_of(meta: EngineMeta, v: Variant) -> float | None:
    """The variant's validation top-1 from meta.json's accuracy row, or None when it was not measured."""
    entry = meta.accuracy.get(v.accuracy_key)
    return float(entry.top1) if entry is not None and entry.top1 is not None else None


def agreement_of(meta: EngineMeta, v: Variant) -> float | None:
    """Share of images where the variant's top-1 class matches fp32's (calibrate measures it), or None."""
    entry = meta.accuracy.get(v.accuracy_key)
    return float(entry.agreement) if entry is not None and entry.agreement is not None else None


@dataclass
class Case:
    """One variant at one batch size while it is being measured."""

    variant: Variant
    engine: Engine
    batch: int
    timer: StageTimer  # "latency" per call, plus the engine's own stages (e.g. h2d/compute/d2h)
    warmup_s: float = 0.0
    warmup_calls: int = 0
    measured_s: float = 0.0
    calls: int = 0
    slices: int = 0

    def done(self, cfg: BenchConfig, extra_s: float = 0.0) -> bool:
        return self.measured_s + extra_s >= cfg.duration and self.calls >= cfg.iterations


def _warm_up(case: Case, images: np.ndarray, seconds: float) -> None:
    """Run until ``seconds`` have passed (at least one call): lazy allocations and thread pools settle."""
    t0 = time.perf_counter()
    while True:
        case.engine.infer(images)
        case.warmup_calls += 1
        if time.perf_counter() - t0 >= seconds:
            break
    case.warmup_s = time.perf_counter() - t0


def _run_slice(case: Case, images: np.ndarray, cfg: BenchConfig) -> None:
    """One turn of the round-robin: calls until the slice is used up or the case is done."""
    eng, timer = case.engine, case.timer
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        eng.infer(images)
        t1 = time.perf_counter()
        timer.record("latency", (t1 - t0) * 1e3)
        for stage, ms in eng.last_timings.items():
            timer.record(stage, ms)
        case.calls += 1
        if t1 - t_start >= cfg.slice_s or case.done(cfg, t1 - t_start):
            break
    case.measured_s += time.perf_counter() - t_start
    case.slices += 1


def measure(
    cases: list[Case], images: np.ndarray, cfg: BenchConfig, tick: Callable[[float], None] = lambda s: None
) -> None:
    """Warm each case up, then round-robin slices over the cases until every one is done."""
    for c in cases:
        _warm_up(c, images, cfg.warmup)
        tick(c.warmup_s)
    active = list(cases)
    while active:
        for c in list(active):
            before = c.measured_s
            _run_slice(c, images, cfg)
            tick(c.measured_s - before)
            if c.done(cfg):
                active.remove(c)


def progress_ticker(bar: Any) -> Callable[[float], None]:
    """Advance ``bar`` by measured seconds, never past its end (warm-up and last slices overshoot a little)."""

    def tick(seconds: float) -> None:
        if bar is not None:
            bar.update(max(0.0, min(seconds, bar.total - bar.n)))

    return tick


def check_batches(ed: EngineDir, v: Variant, eng: Engine, batches: tuple[int, ...]) -> None:
    """Refuse, before measuring anything, a batch beyond the engine's optimisation profile."""
    too_big = [b for b in batches if eng.max_batch is not None and b > eng.max_batch]
    if too_big:
        b = max(too_big)
        fix = (
            f"build a plan for it with `python run.py build {ed.path} --precision {v.precision} --batch 1:{b}:{b}`"
            if v.backend == "tensorrt"
            else "rebuild the engine for a larger batch"
        )
        raise UserError(
            f"--batch {b} exceeds the {v.key} engine's profile maximum of {eng.max_batch}; "
            f"use --batch up to {eng.max_batch}, {fix}, or leave {v.backend} out of --backends"
        )


def runnable_variants(ed: EngineDir, cfg: BenchConfig) -> tuple[list[Variant], list[Skipped]]:
    """``discover_variants``, or a UserError naming why nothing can run here."""
    variants, skipped = discover_variants(ed, cfg)
    if not variants:
        why = "; ".join(f"{s.variant}: {s.reason}" for s in skipped) or "nothing matched --backends/--precisions"
        raise UserError(
            f"no variant of '{ed.path}' can run here ({why}); install onnxruntime or pick other --backends/--precisions"
        )
    return variants, skipped


def open_variants(
    ed: EngineDir, variants: list[Variant], cfg: BenchConfig, engines: list[tuple[Variant, Engine]]
) -> None:
    """Open each variant into ``engines`` and check its batch range; the caller closes ``engines``, also on error."""
    for v in variants:
        eng = open_variant(ed.path, v, cfg)
        engines.append((v, eng))
        check_batches(ed, v, eng, cfg.batches)


def batch_use(batch: int) -> str:
    """How a batch size is timed: batch 1 as ``live`` runs it (latency), larger ones as ``annotate`` (throughput)."""
    return "latency" if batch == 1 else "throughput"


def engine_for_use(
    path: Path, v: Variant, eng: Engine, use: str, cfg: BenchConfig, reopened: dict[tuple[str, str], Engine]
) -> Engine:
    """``eng``, or the variant opened for ``use`` when its backend compiles per use (kept in ``reopened``,
    which the caller closes)."""
    if not eng.use_sensitive or getattr(eng, "use", use) == use:
        return eng
    key = (v.key, use)
    if key not in reopened:
        reopened[key] = open_variant(path, v, cfg, use)
    return reopened[key]


def open_variant(path: Path, v: Variant, cfg: BenchConfig, use: str = "throughput") -> Engine:
    """Open one variant through ``open_engine``, the same door ``live`` and ``annotate`` use.

    ``cfg.threads`` applies to PyTorch too (process-wide), so a comparison at N threads is like for like.
    """
    from edge_app.runtime import open_engine

    # No ONNX Runtime thread spinning: spinning workers would steal the cores from the next variant's slice.
    return open_engine(
        path,
        v.backend,
        v.precision,
        v.device,
        threads=cfg.threads,
        spinning=False,
        use=use,
        dla_core=cfg.dla_core,
        cuda_graphs=cfg.cuda_graphs,
    )


def thread_counts(cfg: BenchConfig) -> dict[str, int | None]:
    """Threads each CPU backend used, for the report (numbers on 2 cores depend on them)."""
    # ONNX Runtime and OpenVINO take --threads as their intra-op thread count (one per core without it).
    out: dict[str, int | None] = {
        "onnxruntime": cfg.threads or os.cpu_count(),
        "openvino": cfg.threads or os.cpu_count(),
    }
    try:
        import torch

        out["torch"] = torch.get_num_threads()
    except ImportError:
        out["torch"] = None
    return out


@dataclass(frozen=True)
class CaseResult:
    """One variant at one batch size, measured: a row of the table and an entry of bench.json's ``results``."""

    variant: str  # Variant.key, e.g. "ort-int8-cpu"
    backend: str
    precision: str
    device: str
    description: str  # the engine's own words: runtime, provider, file
    model_file: str
    batch: int
    latency_ms: Mapping[str, float]  # min, p50, p90, p99, max, mean of one call
    percentiles_exact: bool  # False once calls outnumber the window: percentiles come from the histogram
    throughput_ips: float  # images per second over the measured time
    calls: int
    measured_s: float
    slices: int
    warmup_s: float
    warmup_calls: int
    stages_ms: Mapping[str, Mapping[str, float]]  # the engine's internal stages (h2d/compute/d2h), same statistics
    accuracy_top1: float | None  # from meta.json's accuracy row of the variant
    agreement_fp32: float | None
    histogram: Mapping[str, Any]  # the whole run's latency histogram (LogHistogram.to_dict)
    speedup: float | None = None  # throughput over BASELINE's at the same batch; None without a baseline

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchHeader:
    """What every bench report starts with: the engine, the settings, the machine and thread counts."""

    engine: Path
    name: str
    arch: str
    input: str  # "HxW"
    created: str
    mode: str  # "model" (run_bench) or "pipeline" (bench --pipeline)
    baseline: str
    wall_s: float
    config: BenchConfig
    machine: Mapping[str, Any]  # edge_app.profiling.report.machine_info()
    threads: Mapping[str, int | None]

    def to_dict(self) -> dict[str, Any]:
        """bench.json's leading keys; the config as its JSON settings (tuples as lists, no progress flag)."""
        d = {f.name: getattr(self, f.name) for f in fields(BenchHeader)}
        d["engine"] = str(self.engine)
        d["config"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.config).items() if k != "progress"
        }
        d["machine"], d["threads"] = dict(self.machine), dict(self.threads)
        return d


@dataclass(frozen=True)
class BenchReport(BenchHeader):
    """What ``run_bench`` returns and writes as bench.json (``to_dict``), and ``print_report`` prints."""

    results: tuple[CaseResult, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # what was written: latency_png, throughput_png, json

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "results": [r.to_dict() for r in self.results],
            "skipped": [s.to_dict() for s in self.skipped],
            "files": dict(self.files),
        }


def case_result(c: Case, meta: EngineMeta) -> CaseResult:
    """The record of one measured case (its speed-up is filled in by ``add_ratios``)."""
    lat = c.timer.stats["latency"]
    summ = lat.run_summary()
    return CaseResult(
        variant=c.variant.key,
        backend=c.variant.backend,
        precision=c.variant.precision,
        device=c.engine.device,
        description=c.engine.description,
        model_file=c.engine.model_file,
        batch=c.batch,
        latency_ms={k: summ[k] for k in ("min", "p50", "p90", "p99", "max", "mean")},
        percentiles_exact=summ["exact"],
        throughput_ips=c.calls * c.batch / c.measured_s if c.measured_s > 0 else float("nan"),
        calls=c.calls,
        measured_s=c.measured_s,
        slices=c.slices,
        warmup_s=c.warmup_s,
        warmup_calls=c.warmup_calls,
        stages_ms={
            name: {k: s[k] for k in ("min", "p50", "p90", "p99", "max", "mean")}
            for name, s in c.timer.summary().items()
            if name != "latency"
        },
        accuracy_top1=accuracy_of(meta, c.variant),
        agreement_fp32=agreement_of(meta, c.variant),
        histogram=lat.hist.to_dict(),
    )


def add_ratios(results: list[CaseResult]) -> list[CaseResult]:
    """``results`` with ``speedup``: throughput over the PyTorch fp32 baseline's at the same batch (None without one)."""
    base = {r.batch: r.throughput_ips for r in results if r.variant == BASELINE}
    return [replace(r, speedup=r.throughput_ips / base[r.batch] if base.get(r.batch) else None) for r in results]


def run_bench(engine_path: str | Path, cfg: BenchConfig, out: str | Path) -> BenchReport:
    """Benchmark every variant of ``engine_path``; write bench.json and plots under ``out``; return the report."""
    from edge_app.profiling.report import write_report

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
        total_s = len(cfg.batches) * len(engines) * (cfg.warmup + cfg.duration)
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=round(total_s, 1),
                desc="bench",
                unit="s",
                leave=False,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
            )
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
    report = BenchReport(
        **vars(bench_header(ed, meta, cfg, "model", wall)), results=tuple(add_ratios(results)), skipped=tuple(skipped)
    )
    return write_report(report, Path(out))


def bench_header(ed: EngineDir, meta: EngineMeta, cfg: BenchConfig, mode: str, wall: float) -> BenchHeader:
    """The fields every bench report starts with: engine, settings, machine and thread counts."""
    from edge_app.profiling.report import machine_info

    return BenchHeader(
        engine=ed.path,
        name=meta.name,
        arch=meta.arch,
        input=f"{meta.input.height}x{meta.input.width}",
        created=now_iso(),
        mode=mode,
        baseline=BASELINE,
        wall_s=wall,
        config=replace(cfg),  # a snapshot
        machine=machine_info(),
        threads=thread_counts(cfg),
    )


def report_header(ed: EngineDir, meta: EngineMeta, cfg: BenchConfig, mode: str, wall: float) -> dict[str, Any]:
    """``bench_header`` as bench.json's dict, for ``bench --pipeline``'s report (a dict of its own)."""
    return bench_header(ed, meta, cfg, mode, wall).to_dict()


def print_report(report: BenchReport) -> None:
    """Print the machine, the table, what was left out and where the files went."""
    from edge_app.profiling.report import machine_line, results_table

    cfg = report.config
    print(machine_line(report.machine))
    print(
        f"engine: {report.engine} ({report.arch}, {report.input}); warm-up {cfg.warmup:g} s, then "
        f"{cfg.duration:g} s or {cfg.iterations} calls per variant and batch, interleaved in {cfg.slice_s:g} s slices; "
        + "threads: "
        + ", ".join(f"{k} {v}" for k, v in report.threads.items() if v)
    )
    print(results_table(report.results, report.baseline))
    if any(r.backend == "openvino" for r in report.results):
        print(
            "OpenVINO runs batch 1 with its LATENCY hint (as `live`) and larger batches with THROUGHPUT (as `annotate`)"
        )
    for s in report.skipped:
        print(f"not measured: {s.variant} ({s.reason})")
    if not any(r.variant == BASELINE for r in report.results):
        print(f"no {BASELINE} baseline in this run, so no speed-up column")
    print("wrote " + ", ".join(report.files.values()))


__all__ = [
    "BenchConfig",
    "BenchReport",
    "CaseResult",
    "Skipped",
    "Variant",
    "discover_variants",
    "parse_batches",
    "parse_list",
    "run_bench",
    "accuracy_of",
    "print_report",
]
