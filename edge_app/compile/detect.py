"""The compile floor's hooks for ``detect``: op allow-list and ``dets`` parity at export, mAP in calibration.

Export is verified two ways: every op must be on :data:`ALLOWED_OPS` (standard ops every runtime and TensorRT's
parser take: no NonZero, no ConvTranspose, no deformable conv), and PyTorch and ONNX Runtime must agree on the
same images (scores everywhere; boxes and classes on rows whose score is not tied with a neighbour, since TopK
may order exact ties either way). Calibration keeps the head's last convs, the sigmoid and the decode float
(:meth:`edge_app.models.tasks.detect.Detect.float_nodes`), calibrates on built-in *training* scenes by default
(never the validation or held-out ones) and reports mAP@0.5, mAP@0.5:0.95 and P/R at the engine's threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from edge_app.compile import quantize as qz
from edge_app.compile import ranges as cal
from edge_app.compile.files import MODEL_FILES, model_file, open_model_file
from edge_app.compile.hooks import AccuracyInput, AccuracyOutcome, CalibrateConfig, CompileHooks, ExportError
from edge_app.data.detection import DetectionSet
from edge_app.engine_dir import TRAINING_SOURCE, AccuracyEntry, EngineMeta, InputSpec
from edge_app.errors import UserError
from edge_app.models.tasks import score_threshold
from edge_app.training import detect_metrics as dm

PARITY_TOLERANCE = 1e-3  # scores are probabilities, boxes input pixels: 1e-3 of either is invisible
# INT8 mAP@0.5 may drop at most this much (absolute) below fp32 before calibrate warns: the target.
MAX_MAP_DROP = 0.01
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
        "ReduceMax",
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


def check_ops(model: Any) -> tuple[str, ...]:
    """The sorted op types of ``model`` (onnx.ModelProto); ExportError naming any op outside :data:`ALLOWED_OPS`."""
    ops = {n.op_type for n in model.graph.node}
    bad = ops - ALLOWED_OPS
    if bad:
        raise ExportError(
            f"the detector graph uses {', '.join(sorted(bad))}, outside the standard ops every runtime "
            f"takes ({', '.join(sorted(ALLOWED_OPS))}); report this with the checkpoint's arch"
        )
    return tuple(sorted(ops))


def parity_images(height: int, width: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """Half rendered scenes (objects, so real peaks), half uniform noise: uint8 (n,H,W,3)."""
    from edge_app.data.scenes import SceneConfig, render_scene, scene_rng

    rng = np.random.default_rng(seed)
    scenes = [
        render_scene(SceneConfig(height, width), scene_rng(seed, "val", 1_000_000 + i))[0] for i in range(n - n // 2)
    ]
    noise = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n // 2)]
    return np.stack(scenes + noise)


@dataclass(frozen=True)
class DetsComparison:
    """Two ``dets`` outputs of the same images compared row by row."""

    max_abs_diff: float  # the larger of the two below
    score_max_abs_diff: float  # over every row
    box_max_abs_diff: float  # over rows not tied in score with a neighbour
    class_agree: float  # share of those rows with the same class
    rows_compared: int
    rows: int


def compare_dets(ref: np.ndarray, got: np.ndarray, tie: float = 1e-4) -> DetsComparison:
    """Max |diff| of scores (all rows) and of boxes/classes on rows not tied in score with a neighbour."""
    ds = float(np.abs(ref[..., 4] - got[..., 4]).max())
    s = ref[..., 4]
    gap = np.full(s.shape, np.inf)
    gap[:, 1:] = np.minimum(gap[:, 1:], np.abs(np.diff(s, axis=1)))
    gap[:, :-1] = np.minimum(gap[:, :-1], np.abs(np.diff(s, axis=1)))
    sep = gap > tie
    db = float(np.abs(ref[..., :4] - got[..., :4])[sep].max()) if sep.any() else 0.0
    cls = float((ref[..., 5][sep] == got[..., 5][sep]).mean()) if sep.any() else 1.0
    return DetsComparison(max(ds, db), ds, db, cls, int(sep.sum()), int(s.size))


@dataclass(frozen=True)
class DetParity:
    """Export's check of a detector: :class:`DetsComparison` of PyTorch and ONNX Runtime on :func:`parity_images`."""

    max_abs_diff: float
    score_max_abs_diff: float
    box_max_abs_diff: float
    class_agree: float
    rows_compared: int
    rows: int
    batch: int
    tolerance: float
    reference: str
    runtime: str

    def failure(self) -> str | None:
        """None when scores and boxes agree within the tolerance and every compared class matches."""
        if self.max_abs_diff <= self.tolerance and self.class_agree >= 1.0:
            return None
        return (
            f"differs from PyTorch (max |diff| {self.max_abs_diff:.2e}, class agreement {self.class_agree:.3f}; "
            f"tolerance {self.tolerance:.0e})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DetParity:
        """From meta.json's ``parity`` (a missing key is a KeyError, i.e. a damaged file)."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def check_parity(model: torch.nn.Module, onnx_model: bytes, spec: InputSpec) -> DetParity:
    """PyTorch vs ONNX Runtime (CPU) on :func:`parity_images`."""
    import onnxruntime as ort

    x = parity_images(spec.height, spec.width)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).float().numpy()
    sess = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    got = sess.run(["dets"], {"images": x})[0]
    return DetParity(
        **asdict(compare_dets(ref, got)),
        batch=len(x),
        tolerance=PARITY_TOLERANCE,
        reference=f"torch {torch.__version__} cpu fp32",
        runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider",
    )


def training_row(ckpt: Mapping[str, Any]) -> AccuracyEntry:
    """Export's fp32 row: the checkpoint's own validation mAP and threshold."""
    return AccuracyEntry.from_dict(
        {
            "map50": ckpt.get("map50"),
            "map50_95": ckpt.get("map50_95"),
            "threshold": ckpt.get("threshold"),
            "source": TRAINING_SOURCE,
            "data": ckpt.get("data_root"),
        }
    )


def calibration_scenes(spec: InputSpec, num: int, root: str | Path = "data/scenes") -> Path:
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


def calibration_images(cfg: CalibrateConfig, spec: InputSpec) -> str:
    """``cfg.images``, with 'synthetic' meaning built-in training scenes at the model size."""
    return str(calibration_scenes(spec, cfg.num)) if cfg.images == cal.SYNTHETIC else cfg.images


def eval_set(val: str | None, meta: EngineMeta, n_scenes: int = 300) -> tuple[DetectionSet, str]:
    """Labelled data for mAP: ``val`` (COCO/YOLO), else the checkpoint's data's val split (built-in: val scenes)."""
    from edge_app.data.detection import load_detection_data

    root = val or meta.data_root or "synthetic"
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


def map_report(inp: AccuracyInput, data: DetectionSet, note: str) -> dict[str, dm.DetectionAccuracy]:
    """mAP@0.5, mAP@0.5:0.95 and P/R at the engine's threshold of every model file, ONNX Runtime CPU."""
    thr = score_threshold(inp.meta)
    report: dict[str, dm.DetectionAccuracy] = {}
    for key in MODEL_FILES:
        if not model_file(inp.ed, key).is_file():
            continue
        with open_model_file(inp.ed, inp.meta, key) as eng:
            dets = dm.predict(lambda x, e=eng: e.infer(x)["dets"], data.images, batch=32)
        report[key] = dm.evaluate_dets(dets, data.boxes, data.classes, data.names, threshold=thr)
    return report


def format_map_table(report: Mapping[str, dm.DetectionAccuracy], files: Mapping[str, str], note: str) -> list[str]:
    """The table ``calibrate`` prints for a detector (``files``: accuracy row -> file name)."""
    first = next(iter(report.values()))
    lines = [
        f"accuracy on {note} (ONNX Runtime CPU, P/R at score >= {first.threshold:.2f}, IoU 0.5):",
        f"  {'model':<22} {'mAP@.5':>7} {'mAP@.5:.95':>10} {'P':>6} {'R':>6}",
    ]
    for k, r in report.items():
        lines.append(f"  {files[k]:<22} {r.map50:>7.4f} {r.map50_95:>10.4f} {r.precision:>6.3f} {r.recall:>6.3f}")
    return lines


def map_warnings(report: Mapping[str, dm.DetectionAccuracy], files: Mapping[str, str]) -> list[str]:
    """A clear line for every INT8 model whose mAP@0.5 falls more than MAX_MAP_DROP below fp32."""
    base = report["fp32"].map50
    out = []
    for k in ("int8.trt", "int8.cpu"):
        if k in report and base - report[k].map50 > MAX_MAP_DROP:
            out.append(
                f"WARNING: {files[k]} mAP@0.5 {report[k].map50:.4f} is {100 * (base - report[k].map50):.1f} "
                f"points below fp32 {base:.4f}; calibrate with more representative images (--images, --num) or another --method"
            )
    return out


def accuracy(inp: AccuracyInput) -> AccuracyOutcome:
    """Calibrate's hook: mAP and P/R of every model file on the labelled validation data."""
    data, note = eval_set(inp.cfg.val, inp.meta)
    report = map_report(inp, data, note)
    files = {k: model_file(inp.ed, k).name for k in report}
    runtime = f"onnxruntime {qz.ort_version()} CPU"
    rows = {
        k: AccuracyEntry.from_dict({"file": files[k], "runtime": runtime, "data": note, **acc.to_dict()})
        for k, acc in report.items()
    }
    return AccuracyOutcome(rows, tuple(format_map_table(report, files, note)), tuple(map_warnings(report, files)))


HOOKS = CompileHooks(
    task="detect",
    parity=check_parity,
    parity_from_dict=DetParity.from_dict,
    check_graph=check_ops,
    training_row=training_row,
    check_calibration=lambda cfg: None,  # COCO/YOLO data may be a file or a folder: eval_set checks it
    calibration_images=calibration_images,
    accuracy=accuracy,
)
