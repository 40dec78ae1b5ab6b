"""Checkpoint of any task -> ``engines/<name>/model.onnx`` + ``meta.json``, preprocessing inside the graph.

The exported graph takes ``images``: uint8 (N,H,W,3) BGR at the model resolution, with a dynamic batch, and
returns the task's outputs (a classifier's ``logits`` (N, num_classes); a detector's ``dets`` (N, K, 6), decode
inside the graph). One flow for every task: the task descriptor (:mod:`edge_app.models.tasks`) rebuilds the
network, names the outputs and their layout; the compile hooks (:mod:`edge_app.compile.tasks`) check the graph
and its parity with PyTorch. Nothing is written when a check fails.
"""

from __future__ import annotations

import io
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from edge_app.compile.hooks import ExportError, ParityCheck
from edge_app.compile.tasks import compile_hooks
from edge_app.engine_dir import EngineDir, EngineMeta, now_iso
from edge_app.errors import UserError
from edge_app.fsutil import atomic_write, atomic_write_bytes, ensure_writable_dir, sha256_file
from edge_app.models.checkpoint import checkpoint_task, load_checkpoint
from edge_app.models.tasks import get_task
from edge_app.runtime.tensorrt.onnx_rules import require_trt_onnx

__all__ = ["OPSET", "ExportError", "ExportResult", "export", "onnx_bytes"]

log = logging.getLogger(__name__)

OPSET = 17  # parsed by TensorRT 8.6+, 10.x and 11.x and by every ONNX Runtime we support
INPUT_NAME = "images"


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` did: the engine folder, its model.onnx, the parity check and the meta.json written."""

    engine: Path
    onnx: Path
    parity: ParityCheck  # the task's check (classify: logits, detect: dets rows)
    cached: bool  # True: the folder was already up to date with this checkpoint, nothing was written
    meta: EngineMeta

    def summary(self) -> list[str]:
        """The lines ``export`` prints."""
        state = "up to date, nothing to do" if self.cached else "exported"
        spec, meta = self.meta.input, self.meta
        crop = f"resize {spec.resize_size} + centre crop" if spec.resize_size else spec.resize
        lines = [
            f"{state}: {self.onnx} (PyTorch vs ONNX Runtime max |diff| {self.parity.max_abs_diff:.2e}, "
            f"tolerance {self.parity.tolerance:.0e})",
            f"wrote {self.engine}/meta.json (task {meta.task}, {meta.arch}, {len(meta.labels)} classes, "
            f"{spec.width}x{spec.height} input, {crop})",
        ]
        agnostic = (meta.extra.get("detector") or {}).get("agnostic")
        if agnostic is not None:
            lines.append(
                f"decode: agnostic {agnostic:g} (a class peak out-scored by another class at the same place is "
                "scaled by it; 1 keeps a box per class)"
            )
        return lines


def onnx_bytes(
    model: torch.nn.Module,
    height: int,
    width: int,
    output_name: str = "logits",
    output_dims: Sequence[str | int] | None = None,
) -> bytes:
    """Trace ``model`` (uint8 NHWC in, one output) to ONNX bytes with a dynamic batch axis.

    ``output_dims``: the output's dimensions to state in the graph where the tracer leaves them symbolic. The
    TorchScript exporter writes one self-contained file; the dynamo exporter would put the weights in a
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
    if output_dims is None:
        return buf.getvalue()
    import onnx

    m = onnx.load_from_string(buf.getvalue())
    for d, v in zip(m.graph.output[0].type.tensor_type.shape.dim, output_dims):
        d.Clear()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    return m.SerializeToString()


def export(
    checkpoint: str | Path,
    name: str,
    engines_root: str | Path = "engines",
    force: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` (any task) to ``engines_root/name``; returns the paths, the parity check and whether
    it was cached. ``settings``: the task's export options (:meth:`Task.with_settings`, e.g. a detector's
    ``agnostic``) in place of the checkpoint's own; they go into meta.json and the folder's checkpoint.pt."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"engine name '{name}' is not a plain folder name; use letters, digits, '-' or '_'")
    task = get_task(checkpoint_task(raw := load_checkpoint(checkpoint)))
    ckpt = task.with_settings(raw, settings or {})
    hooks = compile_hooks(task.name)
    ckpt_sha = sha256_file(checkpoint)
    ed = EngineDir(Path(engines_root) / name)
    ensure_writable_dir(ed.path)
    onnx_path = ed.onnx_path("fp32")

    old = None if force else previous_export(ed, ckpt_sha, task.meta_settings(ckpt))
    if old is not None:
        try:
            return ExportResult(ed.path, onnx_path, hooks.parity_from_dict(old.parity), cached=True, meta=old)
        except (KeyError, TypeError):
            log.info("%s has no readable parity record; exporting again", ed.meta_path)

    net, spec, labels = task.rebuild(ckpt)
    graph = task.graph(net, spec).eval()
    data = onnx_bytes(graph, spec.height, spec.width, task.outputs[0], task.output_dims(net, spec))
    import onnx

    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    ops = hooks.check_graph(proto)
    parity = hooks.parity(graph, data, spec)
    failure = parity.failure()
    if failure:
        raise ExportError(
            f"ONNX export of '{checkpoint}' {failure}; nothing was written; report this with the checkpoint's arch "
            f"'{ckpt['arch']}'"
        )
    # TensorRT's parser rules, checked here where the graph is made (no TensorRT needed): nothing is written on failure.
    require_trt_onnx(proto, onnx_path.name)
    atomic_write_bytes(onnx_path, data)
    # A slim copy of the weights (no optimiser state) keeps the folder self-contained for the PyTorch backend.
    slim = {k: ckpt[k] for k in task.checkpoint_keys if k in ckpt}
    atomic_write(ed.checkpoint_path, lambda p: torch.save(slim, p))
    layout = task.output_layout(net, spec)
    meta = EngineMeta(
        name=name,
        arch=ckpt["arch"],
        labels=labels,
        input=spec,
        outputs=list(task.outputs),
        checkpoint_sha256=ckpt_sha,
        created=now_iso(),
        parity=parity.to_dict(),
        accuracy={"fp32": hooks.training_row(ckpt)},
        task=task.name,
        threshold=ckpt.get("threshold"),
        data_root=ckpt.get("data_root"),
        extra={
            **({"output_layout": layout} if layout else {}),
            **task.meta_settings(ckpt),
            "checkpoint": str(checkpoint),
            "opset": OPSET,
            **({"ops": list(ops)} if ops is not None else {}),
        },
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


def previous_export(ed: EngineDir, ckpt_sha: str, settings: Mapping[str, Any] | None = None) -> EngineMeta | None:
    """The folder's meta.json when it already holds an intact export of the checkpoint with ``ckpt_sha`` and the
    task ``settings`` (meta.json keys, e.g. a detector's head and decode).

    A folder exported from another checkpoint or with other settings loses its derived files here (INT8/FP16
    models, plans): they would be stale, and nothing old may ever be loaded.
    """
    old = existing_meta(ed)
    if old is None:
        return None
    if old.checkpoint_sha256 != ckpt_sha or any(old.extra.get(k) != v for k, v in (settings or {}).items()):
        _remove_derived(ed)
        return None
    onnx_path = ed.onnx_path("fp32")
    return old if old.files.get(onnx_path.name) == sha256_file(onnx_path) else None


def _remove_derived(ed: EngineDir) -> None:
    """A new checkpoint (or new export settings) makes every derived file stale: remove them so nothing old is ever loaded."""
    for f in ("model.fp16.onnx", "model.int8.trt.onnx", "model.int8.cpu.onnx"):
        (ed.path / f).unlink(missing_ok=True)
    if ed.plans_dir.is_dir():
        shutil.rmtree(ed.plans_dir)
    log.info("removed derived files of %s: the checkpoint changed", ed.path)
