"""``calibrate`` for a detector engine: ranges -> INT8 (TensorRT and CPU forms) and FP16 -> mAP per precision.

The classifier path (:mod:`edge_app.compile.calibrate`) reports top-1 and quantizes every Conv; a detector needs
two things more:

- The head's last convs, the sigmoid and the whole decode stay float (``nodes_to_exclude``): the heatmap
  scores and box sizes are the output itself, and the decode's peak test (MaxPool == heat) must compare the
  very same float tensor. :func:`head_and_decode_nodes` finds them from the graph (every node on a path from a
  last Conv to ``dets``), not by name. Measured on the quarter-width ResNet-18 detector at 128 px (300 validation
  scenes, entropy ranges): quantizing the head's last convs too cost 0.9 points of mAP@0.5 in the u8s8 CPU file
  (0.6732 -> 0.6642) and 0.1 in the TensorRT file (0.6712 -> 0.6702); FACTS.md saw 0.9 on an earlier model.
- The report is mAP@0.5, mAP@0.5:0.95 (faster-coco-eval) and P/R at the engine's threshold per file.

Everything else (the range cache, calibration methods, the FP16 cast, the CPU speed ratio) is the classifier's
code, called, not copied. Calibration images default to built-in training scenes (never the validation or
held-out ones). Hook: ``calibrate.run_calibrate`` can hand a ``task == 'detect'`` engine to
:func:`run_calibrate_detect` with the same :class:`CalibrateConfig`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import onnx

from edge_app.compile import quantize as qz
from edge_app.compile import ranges as cal
from edge_app.compile.calibrate import (
    MODELS,
    CalibrateConfig,
    _session,
    _up_to_date,
    calibration_record,
    cpu_latency_ratio,
)
from edge_app.data.detection import DetectionSet
from edge_app.engine_dir import AccuracyEntry, EngineDir, EngineMeta, QuantizationEntry, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.training import detect_metrics as dm

# INT8 mAP@0.5 may drop at most this much (absolute) below fp32 before calibrate warns: the target.
MAX_MAP_DROP = 0.01


def head_and_decode_nodes(model: onnx.ModelProto, output: str = "dets") -> list[str]:
    """Names of the nodes between the heads' last Convs (included) and ``output``: kept out of Q/DQ."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    seen: set[str] = set()
    stack = [output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        names.append(node.name)
        if node.op_type != "Conv":  # a Conv is a head's last layer: keep it float, stop walking
            stack.extend(i for i in node.input if i)
    if not any(n.op_type == "Conv" for n in model.graph.node if n.name in seen):
        raise UserError(f"no Conv feeds '{output}'; calibrate-detect supports the detectors that export_detect writes")
    return names


def calibration_scenes(spec: Any, num: int, root: str | Path = "data/scenes") -> Path:
    """A folder of ``num`` built-in *training* scenes at the model size (PNG), written once."""
    import cv2

    from edge_app.data.scenes import SceneConfig, make_scenes

    d = Path(root) / f"calib-{spec.height}x{spec.width}-{num}"
    stamp = d / ".complete"
    if stamp.is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    # Indices past any training run's pool (seed 0 train split from 10^6 on): unseen, same distribution.
    ds = make_scenes(num, SceneConfig(spec.height, spec.width), seed=0, split="train", start=1_000_000)
    for i, img in enumerate(ds.images):
        cv2.imwrite(str(d / f"{i:05d}.png"), img)
    stamp.write_text("ok\n")
    return d


def eval_set(val: str | None, meta: EngineMeta, n_scenes: int = 300) -> tuple[DetectionSet, str]:
    """Labelled data for mAP: ``val`` (COCO/YOLO), else the checkpoint's data's val split (built-in: val scenes)."""
    from edge_app.data.detection import load_detection_data

    root = val or meta.extra.get("data_root") or "synthetic"
    if root == "synthetic":
        from edge_app.data.scenes import CLASSES, SceneConfig, make_scenes

        if list(meta.labels) != list(CLASSES):
            raise UserError(
                f"the engine's classes ({', '.join(meta.labels)}) are not the built-in shapes; pass --val with its COCO/YOLO data"
            )
        ds = make_scenes(n_scenes, SceneConfig(meta.input.height, meta.input.width), seed=0, split="val")
        return ds, f"{n_scenes} built-in validation scenes (seed 0)"
    _, va, _ = load_detection_data(root, meta.input)
    if list(va.names) != list(meta.labels):
        raise UserError(
            f"the classes of '{root}' ({', '.join(va.names)}) differ from the engine's ({', '.join(meta.labels)})"
        )
    if not len(va):
        raise UserError(f"'{root}' has no validation images; pass --val with labelled data")
    return va, f"{len(va)} validation images of '{root}'"


def map_report(ed: EngineDir, meta: EngineMeta, data: DetectionSet, note: str) -> dict[str, dict[str, Any]]:
    """mAP@0.5, mAP@0.5:0.95 and P/R at the engine's threshold of every model file, ONNX Runtime CPU."""
    thr = float(meta.extra.get("threshold") or 0.3)
    report: dict[str, dict[str, Any]] = {}
    for key, prec, target in MODELS:
        path = ed.onnx_path(prec, target)
        if not path.is_file():
            continue
        sess = _session(path)
        dets = dm.predict(lambda x, s=sess: s.run(None, {"images": x})[0], data.images, batch=32)
        acc = dm.evaluate_dets(dets, data.boxes, data.classes, data.names, threshold=thr)
        report[key] = {
            "file": path.name,
            "runtime": f"onnxruntime {qz.ort_version()} CPU",
            "data": note,
            **acc.to_dict(),
        }
    return report


def format_map_report(report: dict[str, dict[str, Any]]) -> list[str]:
    """The table ``calibrate`` prints for a detector."""
    first = next(iter(report.values()))
    lines = [
        f"accuracy on {first['data']} (ONNX Runtime CPU, P/R at score >= {first['threshold']:.2f}, IoU 0.5):",
        f"  {'model':<22} {'mAP@.5':>7} {'mAP@.5:.95':>10} {'P':>6} {'R':>6}",
    ]
    for r in report.values():
        lines.append(
            f"  {r['file']:<22} {r['map50']:>7.4f} {r['map50_95']:>10.4f} {r['precision']:>6.3f} {r['recall']:>6.3f}"
        )
    return lines


def run_calibrate_detect(
    engine: str | Path, cfg: CalibrateConfig = CalibrateConfig(), say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Calibrate a detector engine and write its INT8/FP16 models and mAP report; returns a summary."""
    if cfg.method not in cal.METHODS:
        raise UserError(f"unknown calibration method '{cfg.method}'; choose one of {', '.join(cal.METHODS)}")
    if cfg.num < 1:
        raise UserError(f"--num {cfg.num} asks for no calibration images; use a positive count such as 512")
    ed = EngineDir(engine).require()
    meta = ed.load_meta()
    if meta.extra.get("task") != "detect":
        raise UserError(
            f"'{ed.path}' is not a detector engine (task {meta.extra.get('task', 'classify')}); use `calibrate`"
        )
    spec = meta.input
    source = str(calibration_scenes(spec, cfg.num)) if cfg.images == cal.SYNTHETIC else cfg.images
    plan = cal.plan_images(source, spec, cfg.num)
    src = ed.onnx_path("fp32")
    model_sha = sha256_file(src)
    key = cal.cache_key(model_sha, plan, cfg.method)
    cpath = cal.cache_path(cfg.cache_dir, ed.name, cfg.method)
    written: list[str] = []
    t0 = time.perf_counter()
    rec, why = (None, "--force given; recalibrating") if cfg.force else cal.read_cache(cpath, key)
    say(why)
    with tempfile.TemporaryDirectory(prefix="edge_app-calib-") as tmp:
        work = Path(tmp)
        pre = qz.preprocess_model(src, work / "pre.onnx")
        if rec is not None and set(rec["ranges"]) - qz.tensor_names(onnx.load(str(pre))):
            rec = None
        if rec is None:
            say(f"calibration images: {plan.describe()}")
            imgs = cal.load_images(plan, spec, cfg.progress)
            t = time.perf_counter()
            ranges = cal.compute_ranges(pre, imgs.images, cfg.method, work, cfg.progress)
            rec = cal.write_cache(cpath, key, plan, imgs, ranges, time.perf_counter() - t)
            say(
                f"calibrated {len(imgs.images)} images ({cfg.method}) in {rec['seconds']:.1f}s: {len(ranges)} tensor ranges -> {cpath}"
            )
            written.append(str(cpath))
        rsha = qz.ranges_sha256(rec["ranges"])
        exclude = head_and_decode_nodes(onnx.load(str(pre)))
        for target in ("trt", "cpu"):
            dst = ed.onnx_path("int8", target)
            if _up_to_date(meta, dst, ranges_sha256=rsha) and not cfg.force:
                say(f"{dst.name} is up to date")
                continue
            settings = qz.quantize_int8(
                pre,
                rec["ranges"],
                target,
                dst,
                work,
                exclude,
                kept_float="preprocessing, head last convs, sigmoid, decode",
            )
            meta.quantization[dst.name] = QuantizationEntry.from_dict(
                {
                    "tool": "onnxruntime.quantization.quantize_static",
                    "version": qz.ort_version(),
                    "recipe": qz.recipe(),
                    "preprocess": "quant_pre_process",
                    "target": target,
                    "ranges": str(cpath),
                    "ranges_sha256": rsha,
                    "method": cfg.method,
                    "settings": settings,
                    "created": now_iso(),
                }
            )
            ed.record_file(meta, dst)
            written.append(str(dst))
        dst = ed.onnx_path("fp16")
        if _up_to_date(meta, dst, source_sha256=model_sha) and not cfg.force:
            say(f"{dst.name} is up to date")
        else:
            settings = qz.write_fp16(src, dst)
            meta.quantization[dst.name] = QuantizationEntry.from_dict(
                {
                    "tool": "edge_app.compile.quantize.cast_fp16",
                    "version": qz.RECIPE_VERSION,
                    "recipe": qz.recipe(),
                    "source_sha256": model_sha,
                    "settings": settings,
                    "created": now_iso(),
                }
            )
            ed.record_file(meta, dst)
            written.append(str(dst))
    meta.calibration = calibration_record(cfg, rec, cpath, model_sha, plan.sha256, rsha)
    data, note = eval_set(cfg.val, meta)
    report = map_report(ed, meta, data, note)
    meta.accuracy.update({k: AccuracyEntry.from_dict(v) for k, v in report.items()})
    speed = cpu_latency_ratio(ed, meta) if cfg.speed else None
    if speed:
        name = ed.onnx_path("int8", "cpu").name
        meta.quantization[name] = dataclasses.replace(meta.quantization[name], cpu_speed=speed)
    ed.save_meta(meta)
    written.append(str(ed.meta_path))
    for line in format_map_report(report):
        say(line)
    warnings = []
    base = report["fp32"]["map50"]
    for k in ("int8.trt", "int8.cpu"):
        if k in report and base - report[k]["map50"] > MAX_MAP_DROP:
            warnings.append(
                f"WARNING: {report[k]['file']} mAP@0.5 {report[k]['map50']:.4f} is {100 * (base - report[k]['map50']):.1f} "
                f"points below fp32 {base:.4f}; calibrate with more representative images (--images, --num) or another --method"
            )
    for w in warnings:
        say(w)
    say("wrote: " + ", ".join(written))
    return {
        "engine": str(ed.path),
        "cache": str(cpath),
        "report": report,
        "speed": speed,
        "warnings": warnings,
        "written": written,
        "seconds": time.perf_counter() - t0,
    }
