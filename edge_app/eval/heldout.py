"""Held-out evaluation of a detector engine: mAP per model file on data no run ever trained or tuned on, and speed.

Two held-out sets (seeds and recipes in :mod:`edge_app.data.scenes`; training refuses the held-out seed):

- ``scenes``: the built-in scene recipe, split 'test', seed :data:`HELDOUT_SEED`, at the model resolution.
- ``video``: another renderer altogether (:class:`edge_app.data.synthetic.SyntheticScene`: objects moving over a
  panning 720p background with lighting drift), seed 4242; each frame is letterboxed by the host exactly as the
  frame loop does, and boxes are mapped back and scored in frame pixels.

The score threshold of precision/recall is the engine's own (chosen on validation data at training time).
Speed: 720p frame -> host resize -> ONNX Runtime CPU run -> boxes in frame pixels, batch 1, fp32 and INT8 (u8s8)
alternating in blocks after warm-up (spinning off: the machines are shared), medians and p90 of each.

Entry point: :func:`run_heldout` (engine folder -> :class:`HeldoutRun`) and :func:`format_heldout`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_app.compile.files import MODEL_FILES, model_file, open_model_file
from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.geometry import boxes_to_frame, resize_to_input
from edge_app.models.tasks import score_threshold
from edge_app.training import detect_metrics as dm
from edge_app.training.detect_metrics import DetectionAccuracy


@dataclass(frozen=True)
class HeldoutReport:
    """mAP and P/R of every model file on the two held-out sets."""

    threshold: float  # score threshold of precision/recall: the engine's own
    sets: Mapping[str, str]  # 'scenes' / 'video' -> what the set is
    scenes: Mapping[str, DetectionAccuracy]  # accuracy row key (fp32, fp16, int8.trt, int8.cpu) -> accuracy
    video: Mapping[str, DetectionAccuracy]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StageTimes:
    """Per-frame milliseconds of one model file on a 720p frame."""

    resize_p50_ms: float
    infer_p50_ms: float  # inference and decode, and the boxes mapped to the frame
    total_p50_ms: float
    total_p90_ms: float


@dataclass(frozen=True)
class Speed720p:
    """fp32 against INT8 u8s8 on ONNX Runtime's CPU, one 720p frame at a time."""

    frame: str
    input: str
    batch: int
    threads: int
    runs: int
    files: Mapping[str, StageTimes]  # 'fp32', 'int8.cpu' (when it exists)

    @property
    def int8_over_fp32_total(self) -> float | None:
        """INT8 p50 total over fp32's (below 1: INT8 is faster); None without an INT8 file."""
        if "int8.cpu" not in self.files:
            return None
        return self.files["int8.cpu"].total_p50_ms / self.files["fp32"].total_p50_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "int8_over_fp32_total": self.int8_over_fp32_total}


@dataclass(frozen=True)
class HeldoutRun:
    """What :func:`run_heldout` measured."""

    engine: Path
    report: HeldoutReport
    speed: Speed720p | None  # None when not asked for

    def to_dict(self) -> dict[str, Any]:
        return {"heldout": self.report.to_dict(), "speed": self.speed.to_dict() if self.speed else None}


def heldout_report(ed: EngineDir, meta: EngineMeta, n_scenes: int = 500, n_frames: int = 60) -> HeldoutReport:
    """mAP@0.5, mAP@0.5:0.95, P/R of every model file on the held-out scenes and video."""
    from edge_app.data.scenes import CLASSES, SceneConfig, heldout_scenes, heldout_video_frames

    if list(meta.labels) != list(CLASSES):
        raise UserError(f"the held-out sets are the built-in shapes; the engine's classes are {', '.join(meta.labels)}")
    thr = score_threshold(meta)
    spec = meta.input
    scenes = heldout_scenes(n_scenes, SceneConfig(spec.height, spec.width))
    frames, vboxes, vclasses = heldout_video_frames(n_frames)
    batch = np.stack([resize_to_input(f, spec) for f in frames])
    on_scenes: dict[str, DetectionAccuracy] = {}
    on_video: dict[str, DetectionAccuracy] = {}
    for key in MODEL_FILES:
        if not model_file(ed, key).is_file():
            continue
        with open_model_file(ed, meta, key) as eng:
            run = lambda x, e=eng: e.infer(x)["dets"]  # noqa: E731
            d = dm.predict(run, scenes.images)
            on_scenes[key] = dm.evaluate_dets(d, scenes.boxes, scenes.classes, scenes.names, thr)
            dv = dm.predict(run, batch)
        dv = [np.concatenate([boxes_to_frame(x[:, :4], f.shape[:2], spec), x[:, 4:]], 1) for x, f in zip(dv, frames)]
        on_video[key] = dm.evaluate_dets(dv, vboxes, vclasses, list(CLASSES), thr)
    sets = {
        "scenes": f"{n_scenes} held-out scenes (split test, seed HELDOUT_SEED) at {spec.width}x{spec.height}",
        "video": f"{len(frames)} frames of the held-out 720p video (seed 4242), {spec.resize} to "
        f"{spec.width}x{spec.height}, scored in frame pixels",
    }
    return HeldoutReport(threshold=thr, sets=sets, scenes=on_scenes, video=on_video)


def speed_720p(
    ed: EngineDir, meta: EngineMeta, rounds: int = 5, block: int = 10, settle: int = 3, threads: int | None = None
) -> Speed720p:
    """ms per 720p frame (host resize + infer + box mapping), fp32 vs INT8 u8s8 on ORT CPU in one interleaved run."""
    from edge_app.data.scenes import heldout_video_frames

    frame = heldout_video_frames(1)[0][0]
    spec = meta.input
    thr = score_threshold(meta)
    # Spinning off: on a shared machine a spinning idle session steals the other one's cores (FACTS.md).
    engines = {
        k: open_model_file(ed, meta, k, threads, spinning=False)
        for k in ("fp32", "int8.cpu")
        if model_file(ed, k).is_file()
    }
    times: dict[str, dict[str, list[float]]] = {k: {"resize": [], "infer": [], "total": []} for k in engines}
    try:
        for _ in range(rounds):
            for k, eng in engines.items():
                for i in range(settle + block):
                    t0 = time.perf_counter()
                    x = resize_to_input(frame, spec)[None]
                    t1 = time.perf_counter()
                    d = eng.infer(x)["dets"][0]
                    d = d[d[:, 4] >= thr]
                    boxes_to_frame(d[:, :4], frame.shape[:2], spec)
                    t2 = time.perf_counter()
                    if i >= settle:
                        times[k]["resize"].append((t1 - t0) * 1e3)
                        times[k]["infer"].append((t2 - t1) * 1e3)
                        times[k]["total"].append((t2 - t0) * 1e3)
    finally:
        for eng in engines.values():
            eng.close()
    files = {
        k: StageTimes(
            resize_p50_ms=float(np.median(v["resize"])),
            infer_p50_ms=float(np.median(v["infer"])),
            total_p50_ms=float(np.median(v["total"])),
            total_p90_ms=float(np.percentile(v["total"], 90)),
        )
        for k, v in times.items()
    }
    return Speed720p(
        frame="1280x720",
        input=f"{spec.width}x{spec.height} {spec.resize}",
        batch=1,
        threads=threads or os.cpu_count() or 1,
        runs=rounds * block,
        files=files,
    )


def run_heldout(
    engine: str | Path, scenes: int = 500, frames: int = 60, speed: bool = True, json_out: str | Path | None = None
) -> HeldoutRun:
    """Held-out mAP of every model file of a detector ``engine`` folder and (``speed``) its 720p CPU speed;
    ``json_out``: also write the numbers there."""
    ed = EngineDir(engine).require()
    meta = ed.load_meta()
    if "dets" not in meta.outputs:
        raise UserError(f"'{engine}' is not a detector engine (task {meta.task}); pass an engine with a 'dets' output")
    if scenes < 1 or frames < 1:
        raise UserError(f"scenes {scenes} and frames {frames} must both be at least 1, e.g. 500 and 60")
    run = HeldoutRun(ed.path, heldout_report(ed, meta, scenes, frames), speed_720p(ed, meta) if speed else None)
    if json_out:
        Path(json_out).write_text(json.dumps(run.to_dict(), indent=2))
    return run


def format_heldout(report: HeldoutReport, speed: Speed720p | None = None) -> list[str]:
    """Tables for the terminal."""
    lines = []
    for name, rows in (("scenes", report.scenes), ("video", report.video)):
        lines.append(f"{report.sets[name]} (P/R at score >= {report.threshold:.2f}):")
        for k, r in rows.items():
            lines.append(
                f"  {k:<9} mAP@0.5 {r.map50:.4f}  mAP@0.5:0.95 {r.map50_95:.4f}  P {r.precision:.3f}  R {r.recall:.3f}"
            )
    if speed:
        for k, v in speed.files.items():
            lines.append(
                f"720p frame, {speed.input}, ORT CPU {speed.threads} threads, batch 1: {k} total "
                f"{v.total_p50_ms:.2f} ms p50 ({v.total_p90_ms:.2f} p90; resize {v.resize_p50_ms:.2f}, "
                f"infer+decode {v.infer_p50_ms:.2f})"
            )
    return lines
