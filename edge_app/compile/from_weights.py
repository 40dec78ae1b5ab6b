"""``export --weights FILE`` / ``--pretrained``: a pretrained ResNet to an engine folder, no training.

The weights become an edge_app checkpoint (architecture, labels, input spec, state dict) which goes through
the same :func:`edge_app.compile.export.export` as a trained one, so the folder is identical in form:
``checkpoint.pt`` for the PyTorch backend and ``calibrate``, ``model.onnx`` with the preprocessing in the
graph, ``meta.json`` (which also records the source weights' sha256).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_app.compile.export import ExportResult, existing_meta
from edge_app.engine_dir import EngineDir, InputSpec
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.models.labels import check_label_count, resolve_labels
from edge_app.models.registry import create_model, list_models
from edge_app.models.weights import check_fits, num_classes_of, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights come from and how frames must be prepared for them."""

    arch: str
    weights: Path
    labels: str = "imagenet"  # imagenet, FILE.txt or a,b,c
    img: int = 224  # the crop fed to the network
    # torchvision's eval transform: shorter side to resize_size, centre crop img (256 -> 224 for V1 weights,
    # 232 -> 224 for V2). None: stretch the whole frame to img x img.
    resize_size: int | None = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not Path(self.weights).is_file():
            raise UserError(f"weights file '{self.weights}' does not exist; pass the path of a saved state dict")
        if self.arch not in list_models():
            raise UserError(f"arch '{self.arch}' is unknown; choose one of {', '.join(list_models())}")
        if self.img < 32 or self.img % 32:
            raise UserError(
                f"img {self.img} must be a multiple of 32 and at least 32 (a ResNet halves the size 5 times); e.g. 224"
            )
        for what, v in (("mean", self.mean), ("std", self.std)):
            if len(v) != 3:
                raise UserError(f"{what} {','.join(map(str, v))} needs 3 values (R,G,B), e.g. 0.485,0.456,0.406")
        if any(s <= 0 for s in self.std):
            raise UserError(f"std {','.join(map(str, self.std))} must be positive")

    def input_spec(self) -> InputSpec:
        """The engine's input spec; InputSpec validates resize_size against the crop."""
        if self.resize_size is None:
            return InputSpec(self.img, self.img, mean=self.mean, std=self.std, resize="stretch")
        return InputSpec(
            self.img, self.img, mean=self.mean, std=self.std, resize="center_crop", resize_size=self.resize_size
        )


def checkpoint_from_weights(src: WeightsSource) -> dict:
    """An edge_app checkpoint (the format ``train`` writes) holding ``src``'s weights, checked against the arch."""
    from edge_app.models.checkpoint import CHECKPOINT_FORMAT

    state = read_state_dict(src.weights)
    n = num_classes_of(state, str(src.weights))
    labels = resolve_labels(src.labels)
    check_label_count(labels, n, str(src.weights))
    model = create_model(src.arch, num_classes=n)
    check_fits(state, model.state_dict(), src.arch, str(src.weights))
    model.load_state_dict(state)
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": src.arch,
        "labels": labels,
        "input": asdict(src.input_spec()),
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "top1": None,
        "epoch": 0,
    }


def export_weights(
    src: WeightsSource, name: str, engines_root: str | Path = "engines", force: bool = False
) -> ExportResult:
    """Export ``src`` to ``engines_root/name`` (export's result); up to date, nothing written, when weights and settings match."""
    from edge_app.compile.classify import Parity

    weights_sha = sha256_file(src.weights)
    ed = EngineDir(Path(engines_root) / name)
    old = None if force else existing_meta(ed)
    if (
        old
        and old.weights_sha256 == weights_sha
        and old.input == src.input_spec()
        and old.arch == src.arch
        and old.labels == resolve_labels(src.labels)
        and old.files.get(ed.onnx_path().name) == sha256_file(ed.onnx_path())
    ):
        return ExportResult(ed.path, ed.onnx_path(), Parity.from_dict(old.parity), True, old)
    # No validation set came with the weights: no fp32 accuracy row until calibrate measures one.
    return export_checkpoint_of_weights(checkpoint_from_weights(src), src, weights_sha, name, engines_root, force)


def export_checkpoint_of_weights(
    ckpt: dict,
    src: Any,
    weights_sha: str,
    name: str,
    engines_root: str | Path,
    force: bool,
    extra: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``ckpt`` (made from ``src.weights``) through the checkpoint path, then record the weights it came
    from in meta.json: the weights file and its sha256, ``extra`` settings, and no training data or fp32 row."""
    import torch

    from edge_app.compile.export import export

    ed = EngineDir(Path(engines_root) / name)
    with tempfile.TemporaryDirectory(prefix="edge_app-weights-") as tmp:
        path = Path(tmp) / f"{src.arch}.pt"
        torch.save(ckpt, path)
        result = export(path, name, engines_root, force=force)
    meta = ed.load_meta()
    meta.extra.update({"checkpoint": str(ed.checkpoint_path), "weights": str(src.weights), **(extra or {})})
    meta.weights_sha256, meta.data_root = weights_sha, None
    meta.accuracy.pop("fp32", None)
    ed.save_meta(meta)
    return dataclasses.replace(result, meta=meta)
