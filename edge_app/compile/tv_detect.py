"""The compile floor's hooks for ``tv_detect`` (torchvision's COCO detectors): export checks, calibration report.

Export reuses the detector's ``dets`` parity (PyTorch against ONNX Runtime, row by row) and records the ops,
refusing any that some runtime cannot run (``NonMaxSuppression`` is allowed here: TensorRT >= 8.5, ONNX
Runtime and OpenVINO all run it natively). There are no labelled COCO images on the machines this runs on, so
calibration's accuracy report is *agreement with fp32*: fp32's detections at the engine's threshold are the
reference boxes, and every model file's detections are scored against them with faster-coco-eval (mAP@0.5,
mAP@0.5:0.95, P/R), so fp32 scores 1.0 and the rest show what reduced precision costs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edge_app.compile import quantize as qz
from edge_app.compile import ranges as cal
from edge_app.compile.detect import DetParity, check_parity, format_map_table
from edge_app.compile.files import MODEL_FILES, model_file, open_model_file
from edge_app.compile.hooks import AccuracyInput, AccuracyOutcome, CalibrateConfig, CompileHooks, ExportError
from edge_app.engine_dir import TRAINING_SOURCE, AccuracyEntry
from edge_app.errors import UserError
from edge_app.models.tasks import score_threshold
from edge_app.models.tasks.tv_detect import TASK
from edge_app.training import detect_metrics as dm

# Ops some runtime (or TensorRT's parser) cannot run, or that make shapes data-dependent past the NMS.
FORBIDDEN_OPS = frozenset({"NonZero", "ConvTranspose", "DeformConv", "Loop", "If", "Scan"})
# Boxes are in input pixels up to 640+, where FP32 rounding through a ResNet-50 + FPN reaches ~1e-3 px
# (8.2e-4 measured for FCOS at 640): 0.01 px is still invisible. Scores differ by ~2e-5.
PARITY_TOLERANCE = 1e-2
# INT8 agreement mAP@0.5 with fp32 below this: calibrate warns.
MIN_AGREEMENT = 0.9


def check_ops(model: Any) -> tuple[str, ...]:
    """The sorted op types of ``model``; ExportError naming any op of :data:`FORBIDDEN_OPS`."""
    ops = {n.op_type for n in model.graph.node}
    bad = ops & FORBIDDEN_OPS
    if bad:
        raise ExportError(
            f"the detector graph uses {', '.join(sorted(bad))}, which some runtime cannot run; report this with "
            "the weights' arch"
        )
    return tuple(sorted(ops))


def parity(graph: Any, onnx_model: bytes, spec: Any) -> DetParity:
    """The detector's ``dets`` parity (:func:`edge_app.compile.detect.check_parity`) at this task's tolerance."""
    return dataclasses.replace(check_parity(graph, onnx_model, spec), tolerance=PARITY_TOLERANCE)


def check_calibration(cfg: CalibrateConfig) -> None:
    """COCO detectors calibrate on photographs; the built-in shapes would give ranges of the wrong images."""
    if cfg.images == cal.SYNTHETIC:
        raise UserError(
            "a COCO detector is calibrated on photographs, not the built-in shapes; pass --images with a folder "
            "of a few hundred photos like the ones it will see (or a video file)"
        )
    if cfg.val:
        raise UserError(
            f"val '{cfg.val}' is not used for COCO detectors: accuracy is measured as agreement with fp32 on the "
            "calibration images; leave it out"
        )


def agreement(inp: AccuracyInput) -> AccuracyOutcome:
    """mAP of every model file's detections with fp32's (at the engine's threshold) as the reference boxes."""
    images = inp.calibration_images()
    thr = score_threshold(inp.meta)
    dets: dict[str, list[np.ndarray]] = {}
    for key in MODEL_FILES:
        if model_file(inp.ed, key).is_file():
            with open_model_file(inp.ed, inp.meta, key) as eng:
                dets[key] = dm.predict(lambda x, e=eng: e.infer(x)["dets"], images, batch=8)
    ref = [d[d[:, 4] >= thr] for d in dets["fp32"]]
    boxes, classes = [r[:, :4] for r in ref], [r[:, 5].astype(np.int64) for r in ref]
    note = f"{len(images)} calibration images, fp32's {sum(map(len, ref))} detections >= {thr:.2f} as reference"
    report = {k: dm.evaluate_dets(d, boxes, classes, inp.meta.labels, threshold=thr) for k, d in dets.items()}
    files = {k: model_file(inp.ed, k).name for k in report}
    runtime = f"onnxruntime {qz.ort_version()} CPU"
    rows = {
        k: AccuracyEntry.from_dict(
            {"file": files[k], "runtime": runtime, "data": note, "reference": "fp32 detections", **acc.to_dict()}
        )
        for k, acc in report.items()
    }
    warnings = [
        f"WARNING: {files[k]} agrees with fp32 at mAP@0.5 {report[k].map50:.3f} only; calibrate with more "
        "representative photos (--images, --num) or another --method"
        for k in ("int8.trt", "int8.cpu")
        if k in report and report[k].map50 < MIN_AGREEMENT
    ]
    table = format_map_table(report, files, note + " (agreement with fp32)")
    return AccuracyOutcome(rows, tuple(table), tuple(warnings))


HOOKS = CompileHooks(
    task=TASK,
    parity=parity,
    parity_from_dict=DetParity.from_dict,
    check_graph=check_ops,
    training_row=lambda ckpt: AccuracyEntry(source=TRAINING_SOURCE),
    check_calibration=check_calibration,
    calibration_images=lambda cfg, spec: cfg.images,
    accuracy=agreement,
)
