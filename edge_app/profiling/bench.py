"""``bench``: model-only latency and throughput of every backend x precision of an engine folder, in one run.

In the manner of trtexec: a time-based warm-up, then ``duration`` seconds or ``iterations`` calls, whichever
is longer. Variants run **interleaved**: round-robin in short time slices, so a noisy neighbour (5 people
share our 2-core machines) slows every variant alike and the ratios stay fair. Each call is timed on
``perf_counter()``; backends that run on a GPU synchronise before returning, so the clock covers the work.
Results go to a table, ``bench.json`` and PNG plots (edge_app.profiling.report).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.profiling.timers import StageTimer
from edge_app.runtime.base import Engine

log = logging.getLogger(__name__)

BASELINE = "torch-fp32"
BENCH_BACKENDS = ("torch", "onnxruntime", "tensorrt")
# how to get each backend, for the "not installed" message
INSTALL_HINTS = {
    "torch": "install it with `pip install torch==2.13.0`",
    "onnxruntime": "install it with `pip install onnxruntime==1.32.0` (onnxruntime-gpu on an NVIDIA machine)",
    "tensorrt": "TensorRT needs an NVIDIA GPU with its driver and TensorRT itself (JetPack on a Jetson, or "
                "`pip install tensorrt` from NVIDIA's package index)",
}


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
    window: int = 100_000  # samples kept per variant; percentiles are exact up to this many calls, histogram beyond
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.warmup >= 0:
            raise UserError(f"--warmup {self.warmup:g} is negative; give the warm-up in seconds, 0 or more (e.g. --warmup 1)")
        if not self.duration >= 0:
            raise UserError(f"--duration {self.duration:g} is negative; give the measuring time in seconds, 0 or more (e.g. --duration 3)")
        if self.iterations < 1:
            raise UserError(f"--iterations {self.iterations} is below 1; give at least 1 measured call per variant")
        if not self.batches:
            raise UserError("--batch is empty; give one or more batch sizes, e.g. --batch 1,8,32")
        for b in self.batches:
            if b < 1:
                raise UserError(f"--batch {b} is not a batch size; use whole numbers of at least 1, e.g. --batch 1,8,32")
        if not self.slice_s > 0:
            raise UserError(f"--slice {self.slice_s:g} must be greater than 0 seconds, e.g. --slice 0.1")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads {self.threads} must be at least 1")


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; a bad entry is a UserError that names it."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            b = int(part)
        except ValueError:
            raise UserError(f"--batch '{text}': '{part}' is not a whole number; give sizes like --batch 1,8,32") from None
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
class Variant:
    """One backend x precision x device that can be opened with ``open_engine``."""

    key: str  # short name in tables and bench.json, e.g. "ort-int8-cpu"
    backend: str
    precision: str
    device: str
    accuracy_keys: tuple[str, ...]  # where meta.accuracy may hold its top-1, first match wins


def _installed(backend: str) -> tuple[bool, str]:
    if backend == "torch":
        return importlib.util.find_spec("torch") is not None, "PyTorch is not installed"
    if backend == "onnxruntime":
        return importlib.util.find_spec("onnxruntime") is not None, "ONNX Runtime is not installed"
    try:
        from edge_app.runtime import tensorrt as trt_backend
    except ImportError as e:
        return False, f"the TensorRT backend cannot be imported ({e})"
    if not hasattr(trt_backend, "available"):
        return False, "this build has no TensorRT backend yet"
    ok, why = trt_backend.available()
    return bool(ok), str(why)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def discover_variants(ed: EngineDir, cfg: BenchConfig) -> tuple[list[Variant], list[dict[str, str]]]:
    """Every variant this machine can run for ``ed``, and the ones left out with the reason why."""
    wanted = cfg.backends or BENCH_BACKENDS
    skipped: list[dict[str, str]] = []
    installed: dict[str, bool] = {}
    for b in wanted:
        ok, why = _installed(b)
        installed[b] = ok
        if not ok:
            if cfg.backends is not None:  # named explicitly: the user expects it, so say how to get it
                raise UserError(f"--backends {b}: {why}; {INSTALL_HINTS[b]}, or leave {b} out of --backends")
            skipped.append({"variant": b, "reason": why})
    cands: list[tuple[Variant, Path | None, str]] = []
    cpu = cfg.device in ("auto", "cpu")
    gpu = cfg.device in ("auto", "cuda") or cfg.device.startswith("cuda:")
    if installed.get("torch"):
        tdev = "cuda" if gpu and _cuda_available() else "cpu"
        if tdev == "cpu" and not cpu:
            skipped.append({"variant": "torch", "reason": f"--device {cfg.device} but PyTorch sees no CUDA GPU"})
        else:
            cands.append((Variant(BASELINE, "torch", "fp32", tdev, ("fp32",)), ed.checkpoint_path, "re-run `python run.py export` to restore it"))
            if tdev == "cuda":
                cands.append((Variant("torch-fp16", "torch", "fp16", tdev, ("fp16",)), ed.checkpoint_path, "re-run `python run.py export` to restore it"))
    if installed.get("onnxruntime"):
        from edge_app.runtime.onnxruntime import GPU_PROVIDERS, available_providers

        if cpu:
            cands.append((Variant("ort-fp32", "onnxruntime", "fp32", "cpu", ("fp32",)), ed.onnx_path("fp32"), ""))
            cands.append((Variant("ort-int8-cpu", "onnxruntime", "int8", "cpu", ("int8_cpu", "int8.cpu", "int8-cpu", "int8")),
                          ed.onnx_path("int8", "cpu"), "run `python run.py calibrate` to make it"))
        gpu_prov = [p for p in GPU_PROVIDERS if p in available_providers()]
        if gpu and gpu_prov:
            cands.append((Variant("ort-gpu-fp32", "onnxruntime", "fp32", "cuda", ("fp32",)), ed.onnx_path("fp32"), ""))
            cands.append((Variant("ort-gpu-fp16", "onnxruntime", "fp16", "cuda", ("fp16",)), ed.onnx_path("fp16"),
                          "run `python run.py calibrate` to make it"))
    if installed.get("tensorrt"):
        cands.append((Variant("trt-fp32", "tensorrt", "fp32", "cuda", ("fp32",)), ed.onnx_path("fp32"), ""))
        cands.append((Variant("trt-fp16", "tensorrt", "fp16", "cuda", ("fp16",)), ed.onnx_path("fp16"), "run `python run.py calibrate` to make it"))
        cands.append((Variant("trt-int8", "tensorrt", "int8", "cuda", ("int8_trt", "int8.trt", "int8-trt", "int8")),
                      ed.onnx_path("int8", "trt"), "run `python run.py calibrate` to make it"))
    variants: list[Variant] = []
    for v, needs, hint in cands:
        if cfg.precisions is not None and v.precision not in cfg.precisions:
            continue
        if needs is not None and not needs.is_file():
            skipped.append({"variant": v.key, "reason": f"{needs.name} is missing" + (f"; {hint}" if hint else "")})
            continue
        variants.append(v)
    return variants, skipped


def _accuracy_entry(meta: EngineMeta, v: Variant) -> Any:
    for k in v.accuracy_keys:
        if k in meta.accuracy:
            return meta.accuracy[k]
    return None


def accuracy_of(meta: EngineMeta, v: Variant) -> float | None:
    """The variant's validation top-1 from meta.json, or None when it was not measured."""
    entry = _accuracy_entry(meta, v)
    if isinstance(entry, dict):
        entry = entry.get("top1", entry.get("val_top1"))
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        return float(entry)
    return None


def agreement_of(meta: EngineMeta, v: Variant) -> float | None:
    """Share of images where the variant's top-1 class matches fp32's (calibrate measures it), or None."""
    entry = _accuracy_entry(meta, v)
    value = entry.get("agreement") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


def measure(cases: list[Case], images: np.ndarray, cfg: BenchConfig, tick: Callable[[float], None] = lambda s: None) -> None:
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
        fix = (f"build a plan for it with `python run.py build {ed.path} --precision {v.precision} --batch 1:{b}:{b}`"
               if v.backend == "tensorrt" else "rebuild the engine for a larger batch")
        raise UserError(f"--batch {b} exceeds the {v.key} engine's profile maximum of {eng.max_batch}; "
                        f"use --batch up to {eng.max_batch}, {fix}, or leave {v.backend} out of --backends")


def runnable_variants(ed: EngineDir, cfg: BenchConfig) -> tuple[list[Variant], list[dict[str, str]]]:
    """``discover_variants``, or a UserError naming why nothing can run here."""
    variants, skipped = discover_variants(ed, cfg)
    if not variants:
        why = "; ".join(f"{s['variant']}: {s['reason']}" for s in skipped) or "nothing matched --backends/--precisions"
        raise UserError(f"no variant of '{ed.path}' can run here ({why}); install onnxruntime or pick other --backends/--precisions")
    return variants, skipped


def open_variants(ed: EngineDir, variants: list[Variant], cfg: BenchConfig, engines: list[tuple[Variant, Engine]]) -> None:
    """Open each variant into ``engines`` and check its batch range; the caller closes ``engines``, also on error."""
    for v in variants:
        eng = open_variant(ed.path, v, cfg)
        engines.append((v, eng))
        check_batches(ed, v, eng, cfg.batches)


def open_variant(path: Path, v: Variant, cfg: BenchConfig) -> Engine:
    """Open one variant through ``open_engine``, the same door ``live`` and ``annotate`` use.

    ``cfg.threads`` applies to PyTorch too (process-wide), so a comparison at N threads is like for like.
    """
    from edge_app.runtime import open_engine

    if v.backend == "torch" and cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    # No ONNX Runtime thread spinning: spinning workers would steal the cores from the next variant's slice.
    return open_engine(path, v.backend, v.precision, v.device, threads=cfg.threads, spinning=False)


def thread_counts(cfg: BenchConfig) -> dict[str, int | None]:
    """Threads each CPU backend used, for the report (numbers on 2 cores depend on them)."""
    out: dict[str, int | None] = {"onnxruntime": cfg.threads or os.cpu_count()}
    try:
        import torch

        out["torch"] = torch.get_num_threads()
    except ImportError:
        out["torch"] = None
    return out


def case_result(c: Case, meta: EngineMeta) -> dict[str, Any]:
    """The JSON record of one measured case."""
    lat = c.timer.stats["latency"]
    summ = lat.run_summary()
    return {
        "variant": c.variant.key, "backend": c.variant.backend, "precision": c.variant.precision,
        "device": c.engine.device, "description": c.engine.description, "model_file": c.engine.model_file,
        "batch": c.batch,
        "latency_ms": {k: summ[k] for k in ("min", "p50", "p90", "p99", "max", "mean")},
        "percentiles_exact": summ["exact"],
        "throughput_ips": c.calls * c.batch / c.measured_s if c.measured_s > 0 else float("nan"),
        "calls": c.calls, "measured_s": c.measured_s, "slices": c.slices,
        "warmup_s": c.warmup_s, "warmup_calls": c.warmup_calls,
        "stages_ms": {name: {k: s[k] for k in ("min", "p50", "p90", "p99", "max", "mean")}
                      for name, s in c.timer.summary().items() if name != "latency"},
        "accuracy_top1": accuracy_of(meta, c.variant), "agreement_fp32": agreement_of(meta, c.variant),
        "histogram": lat.hist.to_dict(),
    }


def add_ratios(results: list[dict[str, Any]]) -> None:
    """``speedup``: throughput over the PyTorch fp32 baseline's at the same batch (None without a baseline)."""
    base = {r["batch"]: r["throughput_ips"] for r in results if r["variant"] == BASELINE}
    for r in results:
        b = base.get(r["batch"])
        r["speedup"] = r["throughput_ips"] / b if b else None


def run_bench(engine_path: str | Path, cfg: BenchConfig, out: str | Path) -> dict[str, Any]:
    """Benchmark every variant of ``engine_path``; write bench.json and plots under ``out``; return the report."""
    from edge_app.profiling.report import write_outputs

    ed = EngineDir(engine_path)
    meta = ed.load_meta()  # raises a UserError for a folder without a model
    variants, skipped = runnable_variants(ed, cfg)
    spec = meta.input
    rng = np.random.default_rng(cfg.seed)
    results: list[dict[str, Any]] = []
    engines: list[tuple[Variant, Engine]] = []
    bar = None
    try:
        open_variants(ed, variants, cfg, engines)
        total_s = len(cfg.batches) * len(engines) * (cfg.warmup + cfg.duration)
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=round(total_s, 1), desc="bench", unit="s", leave=False, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")
        tick = progress_ticker(bar)
        t0 = time.perf_counter()
        for b in cfg.batches:
            images = rng.integers(0, 256, (b, spec.height, spec.width, 3), dtype=np.uint8)
            cases = [Case(v, eng, b, StageTimer(window=cfg.window)) for v, eng in engines]
            measure(cases, images, cfg, tick)
            results.extend(case_result(c, meta) for c in cases)
        wall = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
        for _, eng in engines:
            eng.close()
    add_ratios(results)
    report = {**report_header(ed, meta, cfg, "model", wall), "results": results, "skipped": skipped}
    write_outputs(report, Path(out))
    return report


def report_header(ed: EngineDir, meta: Any, cfg: Any, mode: str, wall: float) -> dict[str, Any]:
    """The fields every bench report starts with: engine, settings, machine and thread counts."""
    from edge_app.profiling.report import machine_info

    return {
        "engine": str(ed.path), "name": meta.name, "arch": meta.arch, "input": f"{meta.input.height}x{meta.input.width}",
        "created": now_iso(), "mode": mode, "baseline": BASELINE, "wall_s": wall,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items() if k != "progress"},
        "machine": machine_info(), "threads": thread_counts(cfg),
    }


def print_report(report: dict[str, Any]) -> None:
    """Print the machine, the table, what was left out and where the files went."""
    from edge_app.profiling.report import machine_line, results_table

    cfg = report["config"]
    print(machine_line(report["machine"]))
    print(f"engine: {report['engine']} ({report['arch']}, {report['input']}); warm-up {cfg['warmup']:g} s, then "
          f"{cfg['duration']:g} s or {cfg['iterations']} calls per variant and batch, interleaved in {cfg['slice_s']:g} s slices; "
          + "threads: " + ", ".join(f"{k} {v}" for k, v in report["threads"].items() if v))
    print(results_table(report))
    for s in report["skipped"]:
        print(f"not measured: {s['variant']} ({s['reason']})")
    if not any(r["variant"] == BASELINE for r in report["results"]):
        print(f"no {BASELINE} baseline in this run, so no speed-up column")
    print("wrote " + ", ".join(report["files"].values()))


__all__ = ["BenchConfig", "Variant", "discover_variants", "parse_batches", "parse_list", "run_bench", "accuracy_of", "print_report"]
