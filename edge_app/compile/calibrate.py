"""``run.py calibrate``: calibration images -> cached ranges -> INT8/FP16 models -> accuracy report, in one call.

Every step is skipped when its inputs are unchanged: the ranges by their cache key (model hash, image-set
hash, method), each derived model by the hash of the ranges (or of model.onnx for FP16) recorded in meta.json.
The accuracy report always runs, because it is what tells the user whether the INT8 models can be trusted.
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
from edge_app.data.folder import ImageSet, load_image_folder
from edge_app.engine_dir import (
    ACCURACY_KEYS,
    AccuracyEntry,
    CpuSpeed,
    EngineDir,
    EngineMeta,
    QuantizationEntry,
    now_iso,
)
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.runtime.tensorrt.onnx_rules import require_trt_onnx
from edge_app.training.metrics import compare, top1

# INT8 top-1 may drop at most this much (absolute, in points of percent) before calibrate warns.
MAX_TOP1_DROP = 0.01
# Display order and (precision, target) of every model in the report; the keys are meta.json's accuracy rows.
MODELS = tuple(zip(ACCURACY_KEYS, ("fp32", "fp16", "int8", "int8"), ("any", "any", "trt", "cpu")))

AccuracyReport = Mapping[str, AccuracyEntry]  # ACCURACY_KEYS -> the row measured for that model, in MODELS order


@dataclass
class CalibrateConfig:
    """Options of ``run.py calibrate``; the defaults are what the issue and TensorRT's own calibrator use."""

    images: str = cal.SYNTHETIC  # folder (recursive), video file, or 'synthetic' (built-in train split)
    num: int = 512  # images to calibrate on; a few hundred is the usual advice, more rarely helps
    method: str = "entropy"  # TensorRT's default calibrator was entropy (KL divergence)
    val: str | None = None  # labelled image folder for top-1; default: the checkpoint's training data
    force: bool = False  # recalibrate and rewrite every model even when up to date
    cache_dir: str = "calibration"
    synthetic_root: str = "data/synthetic"
    speed: bool = True  # measure the INT8-vs-fp32 CPU latency ratio
    progress: bool = True


@dataclass(frozen=True)
class CalibrateResult:
    """What ``run_calibrate`` did and measured, for the CLI and the demo (meta.json holds the same records)."""

    engine: Path
    cache: Path  # the tensor-range cache used (written or reused)
    report: AccuracyReport
    speed: CpuSpeed | None  # None with --no-speed
    warnings: tuple[str, ...]  # one sentence per INT8 model that lost too much top-1
    written: tuple[str, ...]  # files written by this run, in order
    seconds: float


def run_calibrate(
    engine: str | Path, cfg: CalibrateConfig = CalibrateConfig(), say: Callable[[str], None] = print
) -> CalibrateResult:
    """Calibrate ``engine`` and write its INT8/FP16 models and report; returns what it did for the CLI and demo."""
    if cfg.method not in cal.METHODS:
        raise UserError(f"unknown calibration method '{cfg.method}'; choose one of {', '.join(cal.METHODS)}")
    if cfg.num < 1:
        raise UserError(f"--num {cfg.num} asks for no calibration images; use a positive count such as 512")
    if cfg.val and not Path(cfg.val).is_dir():
        raise UserError(
            f"validation folder '{cfg.val}' does not exist; pass --val with a folder of <class>/ image folders"
        )
    ed = EngineDir(engine).require()
    meta = ed.load_meta()
    spec = meta.input
    plan = cal.plan_images(cfg.images, spec, cfg.num, cfg.synthetic_root)
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
        for target in ("trt", "cpu"):
            dst = ed.onnx_path("int8", target)
            if _up_to_date(meta, dst, ranges_sha256=rsha) and not cfg.force:
                say(f"{dst.name} is up to date")
                continue
            pre = pre or qz.preprocess_model(src, work / "pre.onnx")
            settings = qz.quantize_int8(pre, rec["ranges"], target, dst, work)
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
            settings = qz.write_fp16(src, dst)
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

    val, val_note = _validation_set(cfg.val, meta)
    if val is None:
        say(f"no top-1 report: {val_note}; agreement with fp32 is measured on the calibration images instead")
        if calib is None:
            calib = cal.load_images(plan, spec, progress=False).images
    report = accuracy_report(ed, meta, val, calib, val_note, cfg.progress)
    meta.accuracy.update(report)
    speed = cpu_latency_ratio(ed, meta) if cfg.speed else None
    if speed:
        cpu_name = ed.onnx_path("int8", "cpu").name
        meta.quantization[cpu_name] = replace(meta.quantization[cpu_name], cpu_speed=speed)
    ed.save_meta(meta)
    written.append(str(ed.meta_path))
    for line in format_report(report, speed):
        say(line)
    warnings = int8_warnings(report)
    for w in warnings:
        say(w)
    say("wrote: " + ", ".join(written))
    return CalibrateResult(
        engine=ed.path,
        cache=cpath,
        report=report,
        speed=speed,
        warnings=tuple(warnings),
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


def _validation_set(val: str | None, meta: EngineMeta) -> tuple[ImageSet | None, str]:
    """The labelled validation split of ``val`` (or of the checkpoint's training data), or None and why not."""
    root = val or meta.extra.get("data_root")
    if not root:
        return None, "the checkpoint names no training data; pass --val DIR"
    if not Path(root).is_dir():
        if val:
            raise UserError(
                f"validation folder '{val}' does not exist; pass --val with a folder of <class>/ image folders"
            )
        return None, f"the training data '{root}' is gone; pass --val DIR"
    _, vs, rep = load_image_folder(root, meta.input)
    if rep.classes != meta.labels:
        msg = f"the classes of '{root}' ({', '.join(rep.classes)}) differ from the model's ({', '.join(meta.labels)})"
        if val:
            raise UserError(msg + "; pass --val with a folder of the model's classes")
        return None, msg
    return vs, f"{len(vs)} validation images of '{root}'"


def _session(path: Path) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _logits(sess: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {name: images[s : s + batch]})[0] for s in range(0, len(images), batch)]
    ).astype(np.float32)


def accuracy_report(
    ed: EngineDir,
    meta: EngineMeta,
    val: ImageSet | None,
    calib: np.ndarray | None,
    data_note: str,
    progress: bool = True,
) -> dict[str, AccuracyEntry]:
    """Top-1 (with labels), top-1 agreement with fp32 and logit deviation of every model, via ONNX Runtime on the CPU.

    ORT's CPU provider runs all four files: the s8s8 TensorRT model and the FP16 model slowly (they are meant
    for the GPU), but with the same numerics a GPU would approximate.
    """
    images = val.images if val is not None else calib
    if images is None or not len(images):
        raise UserError("no images to evaluate on; pass --val DIR or --images with readable images")
    it: Any = MODELS
    if progress:
        from tqdm import tqdm

        it = tqdm(MODELS, desc="accuracy report", unit="model", leave=False)
    logits = {key: _logits(_session(ed.onnx_path(prec, target)), images) for key, prec, target in it}
    ref = logits["fp32"]
    # The export-time (PyTorch) figure stays beside the ORT one: from export's row, or carried over from a previous report.
    old = meta.accuracy.get("fp32")
    training_top1 = None if old is None else old.top1 if old.from_training_run else old.training_top1
    report: dict[str, AccuracyEntry] = {}
    for key, prec, target in MODELS:
        vs_fp32 = compare(logits[key], ref) if key != "fp32" else None
        report[key] = AccuracyEntry(
            file=ed.onnx_path(prec, target).name,
            runtime=f"onnxruntime {qz.ort_version()} CPU",
            n=int(len(images)),
            data=data_note if val is not None else "calibration images (unlabelled)",
            top1=top1(logits[key], val.labels) if val is not None else None,
            agreement=vs_fp32.agreement if vs_fp32 else None,
            max_abs_dev=vs_fp32.max_abs_dev if vs_fp32 else None,
            mean_abs_dev=vs_fp32.mean_abs_dev if vs_fp32 else None,
            training_top1=training_top1 if key == "fp32" else None,
        )
    return report


def int8_warnings(report: AccuracyReport) -> list[str]:
    """A clear line for every INT8 model whose top-1 falls more than MAX_TOP1_DROP below fp32."""
    out = []
    base = report["fp32"].top1
    for key in ("int8.trt", "int8.cpu"):
        t = report[key].top1
        if base is not None and t is not None and base - t > MAX_TOP1_DROP:
            out.append(
                f"WARNING: {report[key].file} top-1 {t:.4f} is {100 * (base - t):.1f} points below fp32 {base:.4f}; "
                "calibrate with more representative images (--images, --num) or another --method"
            )
    return out


def cpu_latency_ratio(
    ed: EngineDir, meta: EngineMeta, rounds: int = 5, block: int = 10, settle: int = 3, threads: int | None = None
) -> CpuSpeed:
    """Median batch-1 latency of model.int8.cpu.onnx and model.onnx on ORT CPU, measured side by side in one run.

    The two models alternate in blocks of ``block`` timed calls, each after ``settle`` untimed ones: load
    changes on a shared machine hit both alike, and the other session's spinning worker threads (ONNX
    Runtime spins briefly after each call) have gone quiet before the clock starts. Alternating single calls
    instead slowed fp32 several-fold on a busy 2-core machine and overstated the INT8 gain.
    """
    from edge_app.runtime.onnxruntime import OnnxRuntimeEngine

    x = np.random.default_rng(0).integers(0, 256, (1, meta.input.height, meta.input.width, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    with (
        OnnxRuntimeEngine(ed, meta, "fp32", threads=threads) as f32,
        OnnxRuntimeEngine(ed, meta, "int8", threads=threads) as i8,
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


def format_report(report: AccuracyReport, speed: CpuSpeed | None) -> list[str]:
    """The accuracy table (and the CPU speed line) as printed by ``calibrate`` and the demo."""

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        f"accuracy on {report['fp32'].data} (n={report['fp32'].n}, ONNX Runtime CPU):",
        f"  {'model':<22} {'top-1':>7} {'agree':>7} {'max|dlogit|':>12} {'mean|dlogit|':>13}",
    ]
    for r in report.values():
        lines.append(
            f"  {r.file:<22} {f(r.top1, '.4f'):>7} {f(r.agreement, '.4f'):>7} "
            f"{f(r.max_abs_dev, '.3e'):>12} {f(r.mean_abs_dev, '.3e'):>13}"
        )
    if speed:
        lines.append(
            f"CPU latency, batch 1, {speed.input}, {speed.threads} threads (median of {speed.runs}): "
            f"fp32 {speed.fp32_ms:.2f} ms, int8 u8s8 {speed.int8_ms:.2f} ms, ratio {speed.ratio:.2f}x"
        )
    return lines
