"""Detector checkpoint -> ``engines/<name>/model.onnx`` + ``meta.json`` (task 'detect'), decode inside the graph.

The graph takes ``images`` (uint8 N,H,W,3 BGR at the model resolution, dynamic batch) like every engine here
and returns ``dets``: float32 (N, K, 6) = x1, y1, x2, y2, score, class in input pixels, best first, K fixed
(100). The frame loop maps boxes back to the frame with :func:`edge_app.data.detection.boxes_to_frame` under the
``input.resize`` policy (letterbox by default) and keeps rows with score >= ``meta.threshold``.

Export is verified two ways: every op must be on :data:`ALLOWED_OPS` (standard ops every runtime and TensorRT's
parser take: no NonZero, no ConvTranspose, no deformable conv), and PyTorch and ONNX Runtime must agree on the
same images (scores everywhere; boxes and classes on rows whose score is not tied with a neighbour, since TopK
may order exact ties either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_app.compile.export import OPSET, ExportError, previous_export
from edge_app.compile.export import onnx_bytes as export_onnx_bytes
from edge_app.engine_dir import AccuracyEntry, EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write, atomic_write_bytes, ensure_writable_dir, sha256_file
from edge_app.models.checkpoint import detector_from_checkpoint, load_checkpoint
from edge_app.models.detector import DETS_COLUMNS, STRIDE, DetectorModel
from edge_app.training.train_detect import TASK

INPUT_NAME, OUTPUT_NAME = "images", "dets"
PARITY_TOLERANCE = 1e-3  # scores are probabilities, boxes input pixels: 1e-3 of either is invisible
# Standard ops the detector may use: what ONNX Runtime, OpenVINO and TensorRT's ONNX parser all run.
ALLOWED_OPS = frozenset(
    {
        "Cast",
        "Transpose",
        "Slice",
        "Mul",
        "Add",
        "Sub",
        "Div",
        "Conv",
        "Relu",
        "MaxPool",
        "Resize",
        "Sigmoid",
        "Equal",
        "TopK",
        "GatherElements",
        "Gather",
        "Flatten",
        "Reshape",
        "Unsqueeze",
        "Squeeze",
        "Expand",
        "Concat",
        "Clip",
        "Constant",
        "ConstantOfShape",
        "Shape",
        "Identity",
        "Where",
        "Floor",
        "QuantizeLinear",
        "DequantizeLinear",
    }
)
FORBIDDEN_OPS = frozenset({"NonZero", "ConvTranspose", "DeformConv", "NonMaxSuppression", "Loop", "If", "Scan"})


def onnx_bytes(model: torch.nn.Module, height: int, width: int) -> bytes:
    """Trace the uint8-in detector to ONNX bytes (dynamic batch; weights inside the file, no .onnx.data)."""
    data = export_onnx_bytes(model, height, width, OUTPUT_NAME)
    # The tracer leaves the output's K and 6 symbolic; they are fixed by construction, so say so in the graph
    # (TensorRT then allocates the output statically, consumers can check it without running the model).
    import onnx

    m = onnx.load_from_string(data)
    net = getattr(model, "net", model)
    k = min(net.max_dets, net.num_classes * (height // STRIDE) * (width // STRIDE))
    dims = m.graph.output[0].type.tensor_type.shape.dim
    for d, v in zip(dims, ("batch", k, len(DETS_COLUMNS))):
        d.Clear()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    return m.SerializeToString()


def check_ops(model: Any) -> set[str]:
    """The op types of ``model`` (onnx.ModelProto); ExportError naming any op outside :data:`ALLOWED_OPS`."""
    ops = {n.op_type for n in model.graph.node}
    bad = ops - ALLOWED_OPS
    if bad:
        raise ExportError(
            f"the detector graph uses {', '.join(sorted(bad))}, outside the standard ops every runtime "
            f"takes ({', '.join(sorted(ALLOWED_OPS))}); report this with the checkpoint's arch"
        )
    return ops


def parity_images(height: int, width: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """Half rendered scenes (objects, so real peaks), half uniform noise: uint8 (n,H,W,3)."""
    from edge_app.data.scenes import SceneConfig, render_scene, scene_rng

    rng = np.random.default_rng(seed)
    scenes = [
        render_scene(SceneConfig(height, width), scene_rng(seed, "val", 1_000_000 + i))[0] for i in range(n - n // 2)
    ]
    noise = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n // 2)]
    return np.stack(scenes + noise)


def compare_dets(ref: np.ndarray, got: np.ndarray, tie: float = 1e-4) -> dict[str, float]:
    """Max |diff| of scores (all rows) and of boxes/classes on rows not tied in score with a neighbour."""
    ds = float(np.abs(ref[..., 4] - got[..., 4]).max())
    s = ref[..., 4]
    gap = np.full(s.shape, np.inf)
    gap[:, 1:] = np.minimum(gap[:, 1:], np.abs(np.diff(s, axis=1)))
    gap[:, :-1] = np.minimum(gap[:, :-1], np.abs(np.diff(s, axis=1)))
    sep = gap > tie
    db = float(np.abs(ref[..., :4] - got[..., :4])[sep].max()) if sep.any() else 0.0
    cls = float((ref[..., 5][sep] == got[..., 5][sep]).mean()) if sep.any() else 1.0
    return {
        "max_abs_diff": max(ds, db),
        "score_max_abs_diff": ds,
        "box_max_abs_diff": db,
        "class_agree": cls,
        "rows_compared": int(sep.sum()),
        "rows": int(s.size),
    }


def check_parity(model: torch.nn.Module, onnx_model: bytes, height: int, width: int) -> dict[str, Any]:
    """PyTorch vs ONNX Runtime (CPU) on :func:`parity_images`."""
    import onnxruntime as ort

    x = parity_images(height, width)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).float().numpy()
    sess = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    return {
        **compare_dets(ref, got),
        "batch": len(x),
        "tolerance": PARITY_TOLERANCE,
        "reference": f"torch {torch.__version__} cpu fp32",
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
    }


def output_layout(k: int) -> dict[str, Any]:
    """meta.json's description of ``dets``, for the frame loop and any other consumer."""
    return {
        OUTPUT_NAME: {
            "shape": ["batch", k, len(DETS_COLUMNS)],
            "dtype": "float32",
            "columns": list(DETS_COLUMNS),
            "coordinates": "model input pixels (map to the frame with input.resize)",
            "order": "score descending",
            "class": "index into labels, stored as float",
            "padding": "rows past the real detections have low scores: keep score >= threshold",
        }
    }


def export_detector(
    checkpoint: str | Path, name: str, engines_root: str | Path = "engines", force: bool = False
) -> dict[str, Any]:
    """Export a detector checkpoint to ``engines_root/name``; returns paths, parity and whether it was cached."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"engine name '{name}' is not a plain folder name; use letters, digits, '-' or '_'")
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("task") != TASK:
        raise UserError(f"'{checkpoint}' is a classifier checkpoint; export it with `python run.py export`")
    ckpt_sha = sha256_file(checkpoint)
    ed = EngineDir(Path(engines_root) / name)
    ensure_writable_dir(ed.path)
    onnx_path = ed.onnx_path("fp32")
    old = None if force else previous_export(ed, ckpt_sha)
    if old is not None:
        return {"engine": str(ed.path), "onnx": str(onnx_path), "parity": old.parity, "cached": True, "meta": old}

    net, spec, labels = detector_from_checkpoint(ckpt)
    model = DetectorModel(net, spec).eval()
    data = onnx_bytes(model, spec.height, spec.width)
    import onnx

    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    ops = check_ops(proto)
    parity = check_parity(model, data, spec.height, spec.width)
    if not parity["max_abs_diff"] <= PARITY_TOLERANCE or parity["class_agree"] < 1.0:
        raise ExportError(
            f"ONNX export of '{checkpoint}' differs from PyTorch (max |diff| {parity['max_abs_diff']:.2e}, "
            f"class agreement {parity['class_agree']:.3f}; tolerance {PARITY_TOLERANCE:.0e}); nothing was written"
        )
    atomic_write_bytes(onnx_path, data)
    slim = {
        k: ckpt[k]
        for k in ("format", "task", "arch", "labels", "input", "detector", "model", "map50", "epoch", "threshold")
    }
    atomic_write(ed.checkpoint_path, lambda p: torch.save(slim, p))
    meta = EngineMeta(
        name=name,
        arch=ckpt["arch"],
        labels=labels,
        input=spec,
        outputs=[OUTPUT_NAME],
        checkpoint_sha256=ckpt_sha,
        created=now_iso(),
        parity=parity,
        accuracy={
            "fp32": AccuracyEntry.from_dict(
                {
                    "map50": ckpt.get("map50"),
                    "map50_95": ckpt.get("map50_95"),
                    "threshold": ckpt.get("threshold"),
                    "source": "training validation (PyTorch)",
                    "data": ckpt.get("data_root"),
                }
            )
        },
        extra={
            "task": TASK,
            "output_layout": output_layout(net.max_dets),
            "threshold": ckpt.get("threshold"),
            "detector": dict(ckpt["detector"]),
            "checkpoint": str(checkpoint),
            "opset": OPSET,
            "ops": sorted(ops),
            "data_root": ckpt.get("data_root"),
        },
    )
    ed.record_file(meta, onnx_path)
    ed.record_file(meta, ed.checkpoint_path)
    ed.save_meta(meta)
    return {"engine": str(ed.path), "onnx": str(onnx_path), "parity": parity, "cached": False, "meta": meta}
