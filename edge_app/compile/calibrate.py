"""``run.py calibrate``: calibration images -> cached ranges -> INT8/FP16 models -> accuracy report, in one call.

One flow for every task. Every step is skipped when its inputs are unchanged: the ranges by their cache key
(model hash, image-set hash, method), each derived model by the hash of the ranges (or of model.onnx for FP16)
recorded in meta.json. The task decides the rest: which nodes stay float in INT8 (its descriptor,
:mod:`edge_app.models.tasks`), which images 'synthetic' means and how accuracy is reported (its compile hooks,
:mod:`edge_app.compile.tasks`: top-1 for classify, mAP for detect). The accuracy report always runs, because
it is what tells the user whether the INT8 models can be trusted.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edge_app.compile import quantize as qz
from edge_app.compile import ranges as cal
from edge_app.compile.classify import speed_line
from edge_app.compile.hooks import AccuracyInput, CalibrateConfig
from edge_app.compile.tasks import compile_hooks
from edge_app.engine_dir import AccuracyEntry, CpuSpeed, EngineDir, EngineMeta, QuantizationEntry, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.models.tasks import get_task
from edge_app.runtime import open_engine
from edge_app.runtime.tensorrt.onnx_rules import require_trt_onnx

__all__ = ["CalibrateConfig", "CalibrateResult", "cpu_latency_ratio", "run_calibrate"]

AccuracyReport = Mapping[str, AccuracyEntry]  # ACCURACY_KEYS -> the row measured for that model, in report order


@dataclass(frozen=True)
class CalibrateResult:
    """What ``run_calibrate`` did and measured, for the CLI and the demo (meta.json holds the same records)."""

    engine: Path
    cache: Path  # the tensor-range cache used (written or reused)
    report: AccuracyReport  # meta.json's accuracy rows (classify: top-1 and agreement; detect: mAP in ``extra``)
    speed: CpuSpeed | None  # None with --no-speed
    warnings: tuple[str, ...]  # one sentence per INT8 model that lost too much accuracy
    written: tuple[str, ...]  # files written by this run, in order
    seconds: float

    def summary(self) -> str:
        """The line ``calibrate`` prints at the end."""
        return f"done in {self.seconds:.1f}s"


def run_calibrate(
    engine: str | Path, cfg: CalibrateConfig = CalibrateConfig(), say: Callable[[str], None] = print
) -> CalibrateResult:
    """Calibrate ``engine`` (any task) and write its INT8/FP16 models and accuracy report; returns what it did."""
    if cfg.method not in cal.METHODS:
        raise UserError(f"unknown calibration method '{cfg.method}'; choose one of {', '.join(cal.METHODS)}")
    if cfg.num < 1:
        raise UserError(f"--num {cfg.num} asks for no calibration images; use a positive count such as 512")
    ed = EngineDir(engine).require()
    meta = ed.load_meta()
    task, hooks = get_task(meta.task), compile_hooks(meta.task)
    hooks.check_calibration(cfg)
    spec = meta.input
    plan = cal.plan_images(hooks.calibration_images(cfg, spec), spec, cfg.num, cfg.synthetic_root)
    src = ed.onnx_path("fp32")
    model_sha = sha256_file(src)
    key = cal.cache_key(model_sha, plan, cfg.method)
    cpath = cal.cache_path(cfg.cache_dir, ed.name, cfg.method)
    written: list[str] = []
    t0 = time.perf_counter()
    rec, why = (None, "--force given; recalibrating") if cfg.force else cal.read_cache(cpath, key)
    calib: np.ndarray | None = None
    with tempfile.TemporaryDirectory(prefix="edge_app-calib-") as tmp:
        work = Path(tmp)
        pre: Path | None = None
        todo = [
            t
            for t in ("trt", "cpu")
            if cfg.force
            or rec is None
            or not _up_to_date(meta, ed.onnx_path("int8", t), ranges_sha256=qz.ranges_sha256(rec["ranges"]))
        ]
        if rec is not None and todo:
            import onnx

            # quant_pre_process output names the tensors the ranges are keyed by; only needed to quantize.
            pre = qz.preprocess_model(src, work / "pre.onnx")
            missing = set(rec["ranges"]) - qz.tensor_names(onnx.load(str(pre)))
            if missing:
                rec, why = (
                    None,
                    f"cache {cpath} names tensors this model lacks (e.g. {sorted(missing)[0]}); recalibrating",
                )
        say(why)
        if rec is None:
            say(f"calibration images: {plan.describe()}")
            imgs = cal.load_images(plan, spec, cfg.progress)  # bad images fail here, before any file is touched
            if imgs.skipped:
                say(f"skipped {len(imgs.skipped)} unreadable image(s), e.g. {imgs.skipped[0]}")
            if len(imgs.images) < cal.MIN_RECOMMENDED:
                say(
                    f"warning: only {len(imgs.images)} usable calibration images; use at least {cal.MIN_RECOMMENDED} "
                    "(a few hundred) representative images for stable INT8 ranges"
                )
            pre = pre or qz.preprocess_model(src, work / "pre.onnx")
            t = time.perf_counter()
            ranges = cal.compute_ranges(pre, imgs.images, cfg.method, work, cfg.progress)
            rec = cal.write_cache(cpath, key, plan, imgs, ranges, time.perf_counter() - t)
            calib = imgs.images
            say(
                f"calibrated {len(imgs.images)} images ({cfg.method}) in {rec['seconds']:.1f}s: {len(ranges)} tensor ranges -> {cpath}"
            )
            written.append(str(cpath))
        rsha = qz.ranges_sha256(rec["ranges"])
        exclude: list[str] | None = None
        keep_fp32: list[str] = []
        for target in ("trt", "cpu"):
            dst = ed.onnx_path("int8", target)
            if _up_to_date(meta, dst, ranges_sha256=rsha) and not cfg.force:
                say(f"{dst.name} is up to date")
                continue
            pre = pre or qz.preprocess_model(src, work / "pre.onnx")
            if exclude is None:  # the task's float-kept nodes, named as in the preprocessed graph
                import onnx

                pre_model = onnx.load(str(pre))
                exclude, keep_fp32 = task.float_nodes(pre_model), task.fp32_nodes(pre_model)
            settings = qz.quantize_int8(
                pre, rec["ranges"], target, dst, work, exclude, kept_float=task.kept_float_note, keep_fp32=keep_fp32
            )
            meta.quantization[dst.name] = QuantizationEntry(
                tool="onnxruntime.quantization.quantize_static",
                version=qz.ort_version(),
                recipe=qz.recipe(),
                preprocess="onnxruntime.quantization.shape_inference.quant_pre_process",
                target=target,
                ranges=str(cpath),
                ranges_sha256=rsha,
                method=cfg.method,
                settings=settings,
                created=now_iso(),
            )
            ed.record_file(meta, dst)
            written.append(str(dst))
        dst = ed.onnx_path("fp16")
        if _up_to_date(meta, dst, source_sha256=model_sha) and not cfg.force:
            say(f"{dst.name} is up to date")
        else:
            settings = qz.write_fp16(src, dst, task.fp32_nodes)
            meta.quantization[dst.name] = QuantizationEntry(
                tool="edge_app.compile.quantize.cast_fp16",
                version=qz.RECIPE_VERSION,
                recipe=qz.recipe(),
                source_sha256=model_sha,
                settings=settings,
                created=now_iso(),
            )
            ed.record_file(meta, dst)
            written.append(str(dst))
    meta.calibration = calibration_record(cfg, rec, cpath, model_sha, plan.sha256, rsha)
    ed.save_meta(meta)
    for precision in ("fp32", "fp16", "int8"):  # the files `build` uses; model.int8.cpu.onnx is for ONNX Runtime only
        require_trt_onnx(ed.onnx_path(precision, "trt"))

    loaded: list[np.ndarray] = [] if calib is None else [calib]

    def calibration_images() -> np.ndarray:
        if not loaded:
            loaded.append(cal.load_images(plan, spec, progress=False).images)
        return loaded[0]

    outcome = hooks.accuracy(AccuracyInput(ed, meta, cfg, calibration_images, say))
    meta.accuracy.update(outcome.rows)
    speed = cpu_latency_ratio(ed, meta) if cfg.speed else None
    if speed:
        cpu_name = ed.onnx_path("int8", "cpu").name
        meta.quantization[cpu_name] = replace(meta.quantization[cpu_name], cpu_speed=speed)
    ed.save_meta(meta)
    written.append(str(ed.meta_path))
    for line in outcome.table + ((speed_line(speed),) if speed else ()):
        say(line)
    for w in outcome.warnings:
        say(w)
    say("wrote: " + ", ".join(written))
    return CalibrateResult(
        engine=ed.path,
        cache=cpath,
        report=outcome.rows,
        speed=speed,
        warnings=outcome.warnings,
        written=tuple(written),
        seconds=time.perf_counter() - t0,
    )


def calibration_record(
    cfg: CalibrateConfig, rec: dict[str, Any], cache: Path, model_sha: str, images_sha: str, ranges_sha: str
) -> dict[str, Any]:
    """meta.json's ``calibration`` section: the method, images, cache and the hashes that tie them together."""
    return {
        "method": cfg.method,
        "settings": cal.METHOD_SETTINGS[cfg.method],
        "images": rec["images"],
        "cache": str(cache),
        "cache_sha256": sha256_file(cache),
        "model_sha256": model_sha,
        "images_sha256": images_sha,
        "ranges_sha256": ranges_sha,
        "tensors": len(rec["ranges"]),
    }


def _up_to_date(
    meta: EngineMeta, path: Path, *, ranges_sha256: str | None = None, source_sha256: str | None = None
) -> bool:
    """True when ``path`` is intact and was made from these ranges (INT8) or this model.onnx (FP16) by this
    version of the recipe and of ORT."""
    q = meta.quantization.get(path.name)
    if q is None or not path.is_file() or q.recipe != qz.recipe():
        return False
    made_from = q.ranges_sha256 == ranges_sha256 if ranges_sha256 is not None else q.source_sha256 == source_sha256
    return made_from and meta.files.get(path.name) == sha256_file(path)


def cpu_latency_ratio(
    ed: EngineDir, meta: EngineMeta, rounds: int = 5, block: int = 10, settle: int = 3, threads: int | None = None
) -> CpuSpeed:
    """Median batch-1 latency of model.int8.cpu.onnx and model.onnx on ORT CPU, measured side by side in one run.

    The two models alternate in blocks of ``block`` timed calls, each after ``settle`` untimed ones: load
    changes on a shared machine hit both alike, and the other session's spinning worker threads (ONNX
    Runtime spins briefly after each call) have gone quiet before the clock starts. Alternating single calls
    instead slowed fp32 several-fold on a busy 2-core machine and overstated the INT8 gain.
    """
    x = np.random.default_rng(0).integers(0, 256, (1, meta.input.height, meta.input.width, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    with (
        open_engine(ed.path, "onnxruntime", "fp32", "cpu", threads=threads) as f32,
        open_engine(ed.path, "onnxruntime", "int8", "cpu", threads=threads) as i8,
    ):
        engines = {"fp32": f32, "int8": i8}
        for _ in range(rounds):
            for k, e in engines.items():
                for _ in range(settle):
                    e.infer(x)
                for _ in range(block):
                    t = time.perf_counter()
                    e.infer(x)
                    times[k].append((time.perf_counter() - t) * 1e3)
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    return CpuSpeed(
        fp32_ms=p50["fp32"],
        int8_ms=p50["int8"],
        ratio=p50["int8"] / p50["fp32"],
        batch=1,
        runs=rounds * block,
        threads=threads or os.cpu_count(),
        input=f"{meta.input.width}x{meta.input.height}",
        runtime=f"onnxruntime {qz.ort_version()} CPUExecutionProvider",
    )
