"""The ``engines/<name>/`` folder: meta.json schema, file paths, and atomic reads/writes.

Every file in the folder is derived from the checkpoint and written atomically (temp file + rename), so a
crash never leaves a half-written engine. ``meta.json`` is the single source of truth for how to feed the
model (input spec), what it outputs (labels), where each file came from (sha256) and how accurate each
precision is.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
# Rows of meta.json's accuracy section, one per model file; bench's Variant.accuracy_key names one of them.
ACCURACY_KEYS = ("fp32", "fp16", "int8.trt", "int8.cpu")
# ``source`` of the fp32 row export writes: the checkpoint's own validation figure, before calibrate measures.
TRAINING_SOURCE = "training validation (PyTorch)"


def _split_known(cls: type, d: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``d``'s keys that are fields of ``cls`` (but not ``extra``), and the rest: unknown keys are kept, not lost."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{cls.__name__} expects a JSON object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {k: v for k, v in d.items() if k in known}, {k: v for k, v in d.items() if k not in known}


def _record_dict(rec: Any, always: tuple[str, ...], first: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object of a meta.json record: the ``first`` fields, then the rest in declaration order; None left
    out unless in ``always``; nested records as their own dicts; then the unknown keys it was read with."""
    names = [f.name for f in dataclasses.fields(rec) if f.name != "extra"]
    out: dict[str, Any] = {}
    for name in [*first, *(n for n in names if n not in first)]:
        v = getattr(rec, name)
        if v is None and name not in always:
            continue
        out[name] = v.to_dict() if hasattr(v, "to_dict") else copy.deepcopy(v)
    out.update(copy.deepcopy(dict(rec.extra)))
    return out


@dataclass(frozen=True)
class CpuSpeed:
    """``calibrate``'s side-by-side batch-1 latency of model.int8.cpu.onnx and model.onnx on ONNX Runtime's CPU."""

    fp32_ms: float
    int8_ms: float
    ratio: float  # int8_ms / fp32_ms: below 1 means INT8 is faster
    batch: int = 1
    runs: int = 0  # timed calls per model
    threads: int | None = None
    input: str = ""  # "WxH"
    runtime: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _record_dict(self, always=("threads",))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CpuSpeed:
        known, extra = _split_known(cls, d)
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class AccuracyEntry:
    """One row of meta.json's accuracy section (keys: :data:`ACCURACY_KEYS`).

    Two writers fill it: ``export`` records the checkpoint's validation top-1 for fp32 (``source`` =
    :data:`TRAINING_SOURCE`, ``data`` = the training data folder); ``calibrate`` measures every model file on
    ONNX Runtime's CPU (``file``, ``runtime``, ``n``, ``data``, ``top1`` and, against fp32, ``agreement`` and
    the logit deviations). ``top1`` is None when the images had no labels. Fields that do not apply are None
    and left out of the JSON, except ``data`` and ``top1``, which both writers always wrote (null included);
    each form keeps its writer's key order, so a meta.json read and written again is the same file.
    """

    file: str | None = None
    runtime: str | None = None
    n: int | None = None
    data: str | None = None  # which images (a sentence or a folder)
    top1: float | None = None
    agreement: float | None = None  # share of images whose top-1 class matches fp32's
    max_abs_dev: float | None = None  # logits against fp32's
    mean_abs_dev: float | None = None
    training_top1: float | None = None  # fp32 only: the export-time (PyTorch) figure, kept beside the ORT one
    source: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_training(cls, top1: float | None, data: str | None) -> AccuracyEntry:
        """The fp32 row export writes from the checkpoint's own validation top-1."""
        return cls(top1=top1, data=data, source=TRAINING_SOURCE)

    @property
    def from_training_run(self) -> bool:
        """True for export's row (the training run's figure), False for one ``calibrate`` measured."""
        return (self.source or "").startswith("training")

    def to_dict(self) -> dict[str, Any]:
        if self.from_training_run:
            return _record_dict(self, always=("top1", "data"), first=("top1", "source", "data"))
        written_by_tool = self.file is not None  # calibrate's row; anything else was written by hand: only its values
        return _record_dict(self, always=("data", "top1") if written_by_tool else ())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AccuracyEntry:
        """Tolerant: missing keys are None, unknown keys are kept in ``extra`` and written back."""
        known, extra = _split_known(cls, d)
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class QuantizationEntry:
    """How one derived file (model.int8.trt.onnx, model.int8.cpu.onnx, model.fp16.onnx) was made.

    INT8 files come from cached tensor ranges (``ranges``, ``ranges_sha256``, ``method``, ``target``); the
    FP16 file from model.onnx (``source_sha256``). ``recipe`` plus that hash is what ``calibrate`` compares to
    decide a file is up to date. ``settings`` is the tool's own record of what it did (free-form by nature).
    """

    tool: str = ""
    version: str = ""
    recipe: str = ""
    preprocess: str | None = None
    target: str | None = None  # int8: "trt" or "cpu"
    ranges: str | None = None  # int8: the calibration cache file
    ranges_sha256: str | None = None
    source_sha256: str | None = None  # fp16: sha256 of the model.onnx it was cast from
    method: str | None = None  # int8: the calibration method
    settings: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    cpu_speed: CpuSpeed | None = None  # int8 cpu: latency against fp32, when measured
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _record_dict(self, always=())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizationEntry:
        """Tolerant: missing keys take their defaults, unknown keys are kept in ``extra`` and written back."""
        known, extra = _split_known(cls, d)
        if isinstance(known.get("cpu_speed"), Mapping):
            known["cpu_speed"] = CpuSpeed.from_dict(known["cpu_speed"])
        return cls(**known, extra=extra)


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
    # letterbox only: the B, G, R value of the padding. None: 114 grey (YOLO's). torchvision's detectors pad the
    # *normalised* image with zeros, i.e. with the mean: their engines store round(mean * 255) in BGR order.
    pad: tuple[int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as meta.json holds it; ``resize_size`` and ``pad`` only when set, so older files round-trip."""
        d = dataclasses.asdict(self)
        for k in ("resize_size", "pad"):
            if d[k] is None:
                del d[k]
        return d

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise UserError(f"input size {self.height}x{self.width} is too small; use at least 32x32")
        if self.resize not in RESIZE_POLICIES:
            raise UserError(f"unknown resize policy '{self.resize}'; choose one of {', '.join(RESIZE_POLICIES)}")
        if self.resize_size is not None:
            if self.resize != "center_crop":
                raise UserError(
                    f"resize_size {self.resize_size} applies to the center_crop policy only, not '{self.resize}'"
                )
            if self.resize_size < max(self.height, self.width):
                raise UserError(
                    f"resize_size {self.resize_size} is smaller than the crop {self.height}x{self.width}; "
                    "resize to at least the crop size, e.g. 256 for a 224 crop"
                )
        if self.pad is not None:
            if self.resize != "letterbox":
                raise UserError(f"pad {list(self.pad)} applies to the letterbox policy only, not '{self.resize}'")
            if len(self.pad) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in self.pad):
                raise UserError(f"pad {list(self.pad)} needs 3 whole numbers 0..255 (B, G, R), e.g. 104,116,124")
            self.pad = tuple(self.pad)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]


# Engines exported before meta.json carried a task are classifiers: that is all the exporter made then.
DEFAULT_TASK = "classify"
# Typed keys that older tools wrote among the free-form keys at the end of meta.json: read from there, and
# written back in the place the file had them (so an old meta.json re-saved is the same bytes).
TRAILING_FIELDS = ("task", "threshold", "data_root", "weights_sha256")


@dataclass
class EngineMeta:
    """Contents of meta.json. Unknown keys found on load are kept in ``extra`` so newer tools round-trip.

    ``task`` names the task descriptor (:func:`edge_app.models.tasks.get_task`) that made the model;
    ``threshold`` is a detector's operating score threshold (None: the task's default); ``data_root`` the
    training data of the checkpoint (None: unknown, e.g. pretrained weights); ``weights_sha256`` the
    weights file an engine exported from pretrained weights came from.
    """

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
    quantization: dict[str, QuantizationEntry] = field(default_factory=dict)  # derived file name -> how it was made
    accuracy: dict[str, AccuracyEntry] = field(default_factory=dict)  # ACCURACY_KEYS -> top1, agreement, ...
    builds: dict[str, Any] = field(default_factory=dict)  # TensorRT plan key -> build info
    version: int = META_VERSION
    task: str = DEFAULT_TASK
    threshold: float | None = None
    data_root: str | None = None
    weights_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The order of the keys after ``version`` as read from the file (None: made by this tool, not read): the
    # typed trailing fields sit among the free-form ones there, and a re-saved file keeps them in place.
    key_order: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Code that still passes the typed keys in ``extra`` (as meta.json's readers did before they were
        # typed) gets them lifted into their fields, so there is one place to read them from.
        for name in TRAILING_FIELDS:
            if name in self.extra and getattr(self, name) == _TRAILING_DEFAULTS[name]:
                setattr(self, name, self.extra.pop(name))
        if self.task is None:  # a file that wrote "task": null is a classifier too
            self.task = DEFAULT_TASK

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of meta.json: the keys it was read with (for files this tool wrote, in the same order)."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "input":
                d[f.name] = v.to_dict()
            elif f.name in ("accuracy", "quantization"):
                d[f.name] = {k: rec.to_dict() for k, rec in v.items()}
            elif f.name not in ("extra", "key_order", *TRAILING_FIELDS):
                d[f.name] = copy.deepcopy(v)
        d.update(self._trailing())
        return d

    def _trailing(self) -> dict[str, Any]:
        """The typed trailing fields and ``extra``, in the file's order when read from one."""
        typed = {}
        for name in TRAILING_FIELDS:
            v = getattr(self, name)
            # A field is written when it says something, or when the file it was read from had the key.
            if v != _TRAILING_DEFAULTS[name] or (self.key_order is not None and name in self.key_order):
                typed[name] = v
        if self.key_order is None:  # made by this tool: the task always, stated rather than implied
            typed = {"task": self.task, **typed}
        both = {**typed, **copy.deepcopy(self.extra)}
        order = [k for k in (self.key_order or ()) if k in both] + [k for k in both if k not in (self.key_order or ())]
        return {k: both[k] for k in order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineMeta:
        """Read meta.json's object; a record missing keys gets defaults, and unknown keys are kept for the next write."""
        kw, extra = _split_known(cls, d)
        kw.pop("key_order", None)
        kw["input"] = InputSpec(**d["input"])
        kw["accuracy"] = {k: AccuracyEntry.from_dict(v) for k, v in (kw.get("accuracy") or {}).items()}
        kw["quantization"] = {k: QuantizationEntry.from_dict(v) for k, v in (kw.get("quantization") or {}).items()}
        kw["extra"] = extra
        trailing = set(TRAILING_FIELDS) | set(extra)
        kw["key_order"] = tuple(k for k in d if k in trailing)
        return cls(**kw)


_TRAILING_DEFAULTS: dict[str, Any] = {
    "task": DEFAULT_TASK,
    "threshold": None,
    "data_root": None,
    "weights_sha256": None,
}


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

    def require(self) -> EngineDir:
        """Raise a UserError unless this folder holds an exported model."""
        if not self.path.is_dir():
            raise UserError(
                f"engine folder '{self.path}' does not exist; create it with `python run.py export CKPT --name NAME`"
            )
        if not self.onnx_path().is_file():
            raise UserError(
                f"engine folder '{self.path}' has no model.onnx; run `python run.py export CKPT --name {self.name}` first"
            )
        if not self.meta_path.is_file():
            raise UserError(f"engine folder '{self.path}' has no meta.json; re-run `python run.py export`")
        return self

    def load_meta(self) -> EngineMeta:
        self.require()
        try:
            return EngineMeta.from_dict(json.loads(self.meta_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(
                f"'{self.meta_path}' is damaged ({type(e).__name__}: {e}); re-run `python run.py export`"
            ) from None

    def save_meta(self, meta: EngineMeta) -> Path:
        return atomic_write_json(self.meta_path, meta.to_dict())

    def record_file(self, meta: EngineMeta, path: Path) -> None:
        """Store the sha256 of a file of this folder in ``meta.files``."""
        meta.files[path.name] = sha256_file(path)


def now_iso() -> str:
    """Local time as ISO 8601 with offset, for 'created' stamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
