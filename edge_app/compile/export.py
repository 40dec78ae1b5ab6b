"""PyTorch checkpoint -> ``engines/<name>/model.onnx`` + ``meta.json``, preprocessing inside the graph.

The exported graph takes ``images``: uint8 (N,H,W,3) BGR at the model resolution, with a dynamic batch, and
returns ``logits``: float32 (N,num_classes). Export is verified by running the same random uint8 batch through
PyTorch and ONNX Runtime; a max abs logit difference above the tolerance fails the export.
"""

from __future__ import annotations

import io
import logging
import shutil
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from edge_app.engine_dir import AccuracyEntry, EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write, atomic_write_bytes, ensure_writable_dir, sha256_file
from edge_app.models.checkpoint import load_checkpoint, model_from_checkpoint
from edge_app.models.preprocess import PreprocessedModel
from edge_app.runtime.tensorrt.onnx_rules import require_trt_onnx

log = logging.getLogger(__name__)

OPSET = 17  # parsed by TensorRT 8.6+, 10.x and 11.x and by every ONNX Runtime we support
PARITY_TOLERANCE = 1e-3
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(UserError):
    """The exported graph does not reproduce the PyTorch model."""


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Parity:
        """From meta.json's ``parity`` (extra keys ignored; a missing one is a KeyError, i.e. a damaged file)."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` did: the engine folder, its model.onnx, the parity check and the meta.json written."""

    engine: Path
    onnx: Path
    parity: Parity
    cached: bool  # True: the folder was already up to date with this checkpoint, nothing was written
    meta: EngineMeta


def onnx_bytes(model: torch.nn.Module, height: int, width: int, output_name: str = OUTPUT_NAME) -> bytes:
    """Trace ``model`` (uint8 NHWC in, one output) to ONNX bytes with a dynamic batch axis.

    The TorchScript exporter writes one self-contained file; the dynamo exporter would put the weights in a
    separate ``.onnx.data``, which ``quant_pre_process`` then cannot read (FACTS.md).
    """
    example = torch.zeros((2, height, width, 3), dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo; it is 25x faster here and its output
        # is the classic opset-17 graph TensorRT 8.6 (JetPack 5) still parses.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def check_parity(
    model: torch.nn.Module, onnx_model: bytes, height: int, width: int, batch: int = 4, seed: int = 0
) -> Parity:
    """Max/mean abs logit difference between PyTorch and ONNX Runtime (CPU) on a random uint8 batch."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).float().numpy()
    sess = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
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


def export(
    checkpoint: str | Path, name: str, engines_root: str | Path = "engines", force: bool = False
) -> ExportResult:
    """Export ``checkpoint`` to ``engines_root/name``; returns the paths, the parity check and whether it was cached."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"engine name '{name}' is not a plain folder name; use letters, digits, '-' or '_'")
    ckpt = load_checkpoint(checkpoint)
    ckpt_sha = sha256_file(checkpoint)
    ed = EngineDir(Path(engines_root) / name)
    ensure_writable_dir(ed.path)
    onnx_path = ed.onnx_path("fp32")

    old = None if force else previous_export(ed, ckpt_sha)
    if old is not None:
        try:
            return ExportResult(ed.path, onnx_path, Parity.from_dict(old.parity), cached=True, meta=old)
        except (KeyError, TypeError):
            log.info("%s has no readable parity record; exporting again", ed.meta_path)

    model, spec, labels = model_from_checkpoint(ckpt)
    wrapped = PreprocessedModel(model, spec).eval()
    data = onnx_bytes(wrapped, spec.height, spec.width)
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data))
    parity = check_parity(wrapped, data, spec.height, spec.width)
    if not parity.max_abs_diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX export of '{checkpoint}' differs from PyTorch by {parity.max_abs_diff:.2e} "
            f"(tolerance {PARITY_TOLERANCE:.0e}); nothing was written; report this with the checkpoint's arch '{ckpt['arch']}'"
        )
    # TensorRT's parser rules, checked here where the graph is made (no TensorRT needed): nothing is written on failure.
    require_trt_onnx(onnx.load_from_string(data), onnx_path.name)
    atomic_write_bytes(onnx_path, data)
    # A slim copy of the weights (no optimiser state) keeps the folder self-contained for the PyTorch backend.
    slim = {k: ckpt[k] for k in ("format", "arch", "labels", "input", "model", "top1", "epoch")}
    atomic_write(ed.checkpoint_path, lambda p: torch.save(slim, p))
    meta = EngineMeta(
        name=name,
        arch=ckpt["arch"],
        labels=labels,
        input=spec,
        outputs=[OUTPUT_NAME],
        checkpoint_sha256=ckpt_sha,
        created=now_iso(),
        parity=parity.to_dict(),
        accuracy={"fp32": AccuracyEntry.from_training(ckpt.get("top1"), ckpt.get("data_root"))},
        extra={"checkpoint": str(checkpoint), "opset": OPSET, "data_root": ckpt.get("data_root")},
    )
    ed.record_file(meta, onnx_path)
    ed.record_file(meta, ed.checkpoint_path)
    ed.save_meta(meta)
    return ExportResult(ed.path, onnx_path, parity, cached=False, meta=meta)


def existing_meta(ed: EngineDir) -> EngineMeta | None:
    """The folder's meta.json when it holds an export (a damaged or missing one: None, it is rewritten)."""
    if not ed.exists():
        return None
    try:
        return ed.load_meta()
    except UserError:
        return None


def previous_export(ed: EngineDir, ckpt_sha: str) -> EngineMeta | None:
    """The folder's meta.json when it already holds an intact export of the checkpoint with ``ckpt_sha``.

    A folder exported from another checkpoint loses its derived files here (INT8/FP16 models, plans): they
    would be stale, and nothing old may ever be loaded.
    """
    old = existing_meta(ed)
    if old is None:
        return None
    if old.checkpoint_sha256 != ckpt_sha:
        _remove_derived(ed)
        return None
    onnx_path = ed.onnx_path("fp32")
    return old if old.files.get(onnx_path.name) == sha256_file(onnx_path) else None


def _remove_derived(ed: EngineDir) -> None:
    """A new checkpoint makes every derived file stale: remove them so nothing old is ever loaded."""
    for f in ("model.fp16.onnx", "model.int8.trt.onnx", "model.int8.cpu.onnx"):
        (ed.path / f).unlink(missing_ok=True)
    if ed.plans_dir.is_dir():
        shutil.rmtree(ed.plans_dir)
    log.info("removed derived files of %s: the checkpoint changed", ed.path)
