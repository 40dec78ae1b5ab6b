"""The compile floor's per-task hooks and the types they share with export and calibrate.

Export and calibrate are one flow for every task; what differs per task is here, as a :class:`CompileHooks`
descriptor per task (registered in :mod:`edge_app.compile.tasks` under :mod:`edge_app.models.tasks`' names):
the PyTorch-vs-ONNX Runtime parity check and the graph check of export, the accuracy row export writes from
the checkpoint, and calibration's images and accuracy report (top-1 for classify, mAP for detect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np
from torch import nn

from edge_app.compile import ranges as cal
from edge_app.engine_dir import AccuracyEntry, EngineDir, EngineMeta, InputSpec
from edge_app.errors import UserError


class ExportError(UserError):
    """The exported graph does not reproduce the PyTorch model, or uses ops some runtime cannot run."""


@dataclass
class CalibrateConfig:
    """Options of ``run.py calibrate``; the defaults are what the issue and TensorRT's own calibrator use."""

    images: str = cal.SYNTHETIC  # folder (recursive), video file, or 'synthetic' (the task's built-in training data)
    num: int = 512  # images to calibrate on; a few hundred is the usual advice, more rarely helps
    method: str = "entropy"  # TensorRT's default calibrator was entropy (KL divergence)
    val: str | None = None  # labelled data for the accuracy report; default: the checkpoint's training data
    force: bool = False  # recalibrate and rewrite every model even when up to date
    cache_dir: str = "calibration"
    synthetic_root: str = "data/synthetic"
    speed: bool = True  # measure the INT8-vs-fp32 CPU latency ratio
    progress: bool = True


class ParityCheck(Protocol):
    """Export's PyTorch-against-ONNX Runtime check of one task, stored as meta.json's ``parity``."""

    max_abs_diff: float
    tolerance: float

    def failure(self) -> str | None:
        """None when the export reproduces PyTorch; else what differs, for the error sentence."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AccuracyInput:
    """What calibrate hands a task's accuracy hook once every model file is written."""

    ed: EngineDir
    meta: EngineMeta
    cfg: CalibrateConfig
    calibration_images: Callable[[], np.ndarray]  # the calibration images (loaded on first call)
    say: Callable[[str], None]


@dataclass(frozen=True)
class AccuracyOutcome:
    """A task's accuracy report over the engine's model files."""

    rows: Mapping[str, AccuracyEntry]  # meta.json's accuracy rows (ACCURACY_KEYS), in report order
    table: tuple[str, ...]  # the lines calibrate prints
    warnings: tuple[str, ...]  # one sentence per INT8 model that lost too much accuracy


@dataclass(frozen=True)
class CompileHooks:
    """One task's hooks on the compile floor."""

    task: str
    parity: Callable[[nn.Module, bytes, InputSpec], ParityCheck]  # (graph module, ONNX bytes, spec) -> check
    parity_from_dict: Callable[[Mapping[str, Any]], ParityCheck]  # meta.json's parity back (KeyError: damaged)
    check_graph: Callable[[Any], tuple[str, ...] | None]  # onnx.ModelProto -> ops to record (None: not recorded)
    training_row: Callable[[Mapping[str, Any]], AccuracyEntry]  # checkpoint -> export's fp32 accuracy row
    check_calibration: Callable[[CalibrateConfig], None]  # pre-flight: a UserError before any work
    calibration_images: Callable[[CalibrateConfig, InputSpec], str]  # the image source to calibrate on
    accuracy: Callable[[AccuracyInput], AccuracyOutcome]
