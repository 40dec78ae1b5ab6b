"""The ``engines/<name>/`` folder: meta.json schema, file paths, and atomic reads/writes.

Every file in the folder is derived from the checkpoint and written atomically (temp file + rename), so a
crash never leaves a half-written engine. ``meta.json`` is the single source of truth for how to feed the
model (input spec), what it outputs (labels), where each file came from (sha256) and how accurate each
precision is.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_app.errors import UserError
from edge_app.fsutil import atomic_write_json, sha256_file

META_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
RESIZE_POLICIES = ("stretch", "center_crop", "letterbox")

# ONNX file per (precision, target). "trt" = symmetric s8s8 Q/DQ with TensorRT placement; "cpu" = u8s8 Q/DQ.
ONNX_FILES = {
    ("fp32", "any"): "model.onnx",
    ("fp16", "any"): "model.fp16.onnx",
    ("int8", "trt"): "model.int8.trt.onnx",
    ("int8", "cpu"): "model.int8.cpu.onnx",
}


@dataclass
class InputSpec:
    """How raw frames become the model input. The graph itself takes uint8 NHWC BGR at (height, width)."""

    height: int
    width: int
    layout: str = "NHWC"
    dtype: str = "uint8"
    color: str = "BGR"
    # ImageNet statistics, in RGB order: the same constants torchvision's weights were trained with.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # "stretch" keeps the whole field of view (the synthetic data is square crops); "center_crop" matches
    # ImageNet-style evaluation; "letterbox" pads to keep aspect ratio.
    resize: str = "stretch"
    # center_crop only: resize the shorter side to this many pixels first, then crop the centre, as
    # torchvision's ImageNet eval transform does (256 then 224; 232 for the V2 weights). None: the crop is
    # the largest centred region of the frame's aspect ratio.
    resize_size: int | None = None

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise UserError(f"input size {self.height}x{self.width} is too small; use at least 32x32")
        if self.resize not in RESIZE_POLICIES:
            raise UserError(f"unknown resize policy '{self.resize}'; choose one of {', '.join(RESIZE_POLICIES)}")
        if self.resize_size is not None:
            if self.resize != "center_crop":
                raise UserError(f"resize_size {self.resize_size} applies to the center_crop policy only, not '{self.resize}'")
            if self.resize_size < max(self.height, self.width):
                raise UserError(f"resize_size {self.resize_size} is smaller than the crop {self.height}x{self.width}; "
                                "resize to at least the crop size, e.g. 256 for a 224 crop")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]


@dataclass
class EngineMeta:
    """Contents of meta.json. Unknown keys found on load are kept in ``extra`` so newer tools round-trip."""

    name: str
    arch: str
    labels: list[str]
    input: InputSpec
    outputs: list[str] = field(default_factory=lambda: ["logits"])
    checkpoint_sha256: str = ""
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    created: str = ""
    parity: dict[str, Any] = field(default_factory=dict)  # export check: PyTorch vs ONNX Runtime
    calibration: dict[str, Any] | None = None  # which images, method, cache file
    quantization: dict[str, Any] = field(default_factory=dict)  # per derived file: tool and settings
    accuracy: dict[str, Any] = field(default_factory=dict)  # per precision/target: top1, agreement, ...
    builds: dict[str, Any] = field(default_factory=dict)  # TensorRT plan key -> build info
    version: int = META_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineMeta":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known and k != "extra"}
        kw["input"] = InputSpec(**d["input"])
        kw["extra"] = {k: v for k, v in d.items() if k not in known}
        return cls(**kw)


class EngineDir:
    """Paths inside one engine folder, and meta.json I/O."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"EngineDir('{self.path}')"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def plans_dir(self) -> Path:
        return self.path / "plans"

    def onnx_path(self, precision: str = "fp32", target: str = "any") -> Path:
        """The ONNX file for a precision; ``target`` ('trt' or 'cpu') only matters for int8."""
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
        key = (precision, target if precision == "int8" else "any")
        if key not in ONNX_FILES:
            raise UserError(f"int8 needs a target of 'trt' or 'cpu', got '{target}'")
        return self.path / ONNX_FILES[key]

    def exists(self) -> bool:
        return self.meta_path.is_file() and self.onnx_path().is_file()

    def require(self) -> "EngineDir":
        """Raise a UserError unless this folder holds an exported model."""
        if not self.path.is_dir():
            raise UserError(f"engine folder '{self.path}' does not exist; create it with `python run.py export CKPT --name NAME`")
        if not self.onnx_path().is_file():
            raise UserError(f"engine folder '{self.path}' has no model.onnx; run `python run.py export CKPT --name {self.name}` first")
        if not self.meta_path.is_file():
            raise UserError(f"engine folder '{self.path}' has no meta.json; re-run `python run.py export`")
        return self

    def load_meta(self) -> EngineMeta:
        self.require()
        try:
            return EngineMeta.from_dict(json.loads(self.meta_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"'{self.meta_path}' is damaged ({type(e).__name__}: {e}); re-run `python run.py export`") from None

    def save_meta(self, meta: EngineMeta) -> Path:
        return atomic_write_json(self.meta_path, meta.to_dict())

    def record_file(self, meta: EngineMeta, path: Path) -> None:
        """Store the sha256 of a file of this folder in ``meta.files``."""
        meta.files[path.name] = sha256_file(path)


def now_iso() -> str:
    """Local time as ISO 8601 with offset, for 'created' stamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
