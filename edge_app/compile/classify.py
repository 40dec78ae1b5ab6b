"""The compile floor's hooks for ``classify``: logit parity at export, top-1 in calibration's accuracy report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from edge_app.compile import quantize as qz
from edge_app.compile.files import MODEL_FILES, model_file, open_model_file
from edge_app.compile.hooks import AccuracyInput, AccuracyOutcome, CalibrateConfig, CompileHooks
from edge_app.data.folder import ImageSet, load_image_folder
from edge_app.engine_dir import AccuracyEntry, CpuSpeed, EngineDir, EngineMeta, InputSpec
from edge_app.errors import UserError
from edge_app.training.metrics import compare, top1

PARITY_TOLERANCE = 1e-3
# INT8 top-1 may drop at most this much (absolute, in points of percent) before calibrate warns.
MAX_TOP1_DROP = 0.01

AccuracyReport = Mapping[str, AccuracyEntry]  # ACCURACY_KEYS -> the row measured for that model, in report order


@dataclass(frozen=True)
class Parity:
    """PyTorch against ONNX Runtime on one random uint8 batch: the export check, stored as meta.json's ``parity``."""

    max_abs_diff: float
    mean_abs_diff: float
    batch: int
    tolerance: float
    reference: str  # what computed the reference logits, e.g. "torch 2.5.1 cpu fp32"
    runtime: str  # what ran the ONNX file
    top1_agree: float

    def failure(self) -> str | None:
        """None within the tolerance; else the difference, for export's error."""
        if self.max_abs_diff <= self.tolerance:
            return None
        return f"differs from PyTorch by {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Parity:
        """From meta.json's ``parity`` (extra keys ignored; a missing one is a KeyError, i.e. a damaged file)."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def check_parity(model: torch.nn.Module, onnx_model: bytes, spec: InputSpec, batch: int = 4, seed: int = 0) -> Parity:
    """Max/mean abs logit difference between PyTorch and ONNX Runtime (CPU) on a random uint8 batch."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).integers(0, 256, (batch, spec.height, spec.width, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).float().numpy()
    sess = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"images": x})[0]
    diff = np.abs(ref - got)
    return Parity(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        batch=batch,
        tolerance=PARITY_TOLERANCE,
        reference=f"torch {torch.__version__} cpu fp32",
        runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider",
        top1_agree=float((ref.argmax(1) == got.argmax(1)).mean()),
    )


def check_val(cfg: CalibrateConfig) -> None:
    """``val`` must be a folder of <class>/ image folders when given."""
    if cfg.val and not Path(cfg.val).is_dir():
        raise UserError(
            f"validation folder '{cfg.val}' does not exist; pass --val with a folder of <class>/ image folders"
        )


def validation_set(val: str | None, meta: EngineMeta) -> tuple[ImageSet | None, str]:
    """The labelled validation split of ``val`` (or of the checkpoint's training data), or None and why not."""
    root = val or meta.data_root
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
    it: Any = MODEL_FILES
    if progress:
        from tqdm import tqdm

        it = tqdm(MODEL_FILES, desc="accuracy report", unit="model", leave=False)
    logits = {}
    for key in it:
        with open_model_file(ed, meta, key) as eng:
            logits[key] = np.concatenate(
                [eng.infer(images[s : s + 64])["logits"] for s in range(0, len(images), 64)]
            ).astype(np.float32)
    ref = logits["fp32"]
    # The export-time (PyTorch) figure stays beside the ORT one: from export's row, or carried over from a previous report.
    old = meta.accuracy.get("fp32")
    training_top1 = None if old is None else old.top1 if old.from_training_run else old.training_top1
    report: dict[str, AccuracyEntry] = {}
    for key in MODEL_FILES:
        vs_fp32 = compare(logits[key], ref) if key != "fp32" else None
        report[key] = AccuracyEntry(
            file=model_file(ed, key).name,
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


def speed_line(speed: CpuSpeed) -> str:
    """The CPU latency line calibrate prints under the accuracy table."""
    return (
        f"CPU latency, batch 1, {speed.input}, {speed.threads} threads (median of {speed.runs}): "
        f"fp32 {speed.fp32_ms:.2f} ms, int8 u8s8 {speed.int8_ms:.2f} ms, ratio {speed.ratio:.2f}x"
    )


def format_table(report: AccuracyReport) -> list[str]:
    """The top-1 table as printed by ``calibrate`` and the demo."""

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
    return lines


def format_report(report: AccuracyReport, speed: CpuSpeed | None) -> list[str]:
    """The accuracy table and the CPU speed line, as printed by ``calibrate``."""
    return format_table(report) + ([speed_line(speed)] if speed else [])


def accuracy(inp: AccuracyInput) -> AccuracyOutcome:
    """Calibrate's hook: top-1 on the labelled validation set (agreement only, on calibration images, without one)."""
    val, note = validation_set(inp.cfg.val, inp.meta)
    calib = None
    if val is None:
        inp.say(f"no top-1 report: {note}; agreement with fp32 is measured on the calibration images instead")
        calib = inp.calibration_images()
    rows = accuracy_report(inp.ed, inp.meta, val, calib, note, inp.cfg.progress)
    return AccuracyOutcome(rows, tuple(format_table(rows)), tuple(int8_warnings(rows)))


HOOKS = CompileHooks(
    task="classify",
    parity=check_parity,
    parity_from_dict=Parity.from_dict,
    check_graph=lambda model: None,
    training_row=lambda ckpt: AccuracyEntry.from_training(ckpt.get("top1"), ckpt.get("data_root")),
    check_calibration=check_val,
    calibration_images=lambda cfg, spec: cfg.images,
    accuracy=accuracy,
)
