"""Held-out evaluation of a detector engine: mAP per model file on data no run ever trained or tuned on, and speed.

Two held-out sets (seeds and recipes in :mod:`edge_app.data.scenes`; training refuses the held-out seed):

- ``scenes``: the built-in scene recipe, split 'test', seed :data:`HELDOUT_SEED`, at the model resolution.
- ``video``: another renderer altogether (:class:`edge_app.data.synthetic.SyntheticScene`: objects moving over a
  panning 720p background with lighting drift), seed 4242; each frame is letterboxed by the host exactly as the
  frame loop does, and boxes are mapped back and scored in frame pixels.

The score threshold of precision/recall is the engine's own (chosen on validation data at training time).
Speed: 720p frame -> host resize -> ONNX Runtime CPU run -> boxes in frame pixels, batch 1, fp32 and INT8 (u8s8)
alternating in blocks after warm-up (spinning off: the machines are shared), medians and p90 of each.

Run: ``python -m edge_app.eval.heldout --engine engines/NAME [--scenes 500] [--frames 60] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.engine_dir import EngineDir, EngineMeta
from edge_app.errors import UserError
from edge_app.geometry import boxes_to_frame, resize_to_input
from edge_app.training import detect_metrics as dm

FILES = (("fp32", "fp32", "any"), ("fp16", "fp16", "any"), ("int8.trt", "int8", "trt"), ("int8.cpu", "int8", "cpu"))


def _session(path: Path, threads: int | None = None, spinning: bool = True) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.log_severity_level = 3
    if not spinning:  # on a shared machine a spinning idle session steals the other one's cores (FACTS.md)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def heldout_report(ed: EngineDir, meta: EngineMeta, n_scenes: int = 500, n_frames: int = 60) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95, P/R of every model file on the held-out scenes and video."""
    from edge_app.data.scenes import CLASSES, SceneConfig, heldout_scenes, heldout_video_frames

    if list(meta.labels) != list(CLASSES):
        raise UserError(f"the held-out sets are the built-in shapes; the engine's classes are {', '.join(meta.labels)}")
    thr = float(meta.extra.get("threshold") or 0.3)
    spec = meta.input
    scenes = heldout_scenes(n_scenes, SceneConfig(spec.height, spec.width))
    frames, vboxes, vclasses = heldout_video_frames(n_frames)
    batch = np.stack([resize_to_input(f, spec) for f in frames])
    out: dict[str, Any] = {
        "threshold": thr,
        "scenes": {},
        "video": {},
        "sets": {
            "scenes": f"{n_scenes} held-out scenes (split test, seed HELDOUT_SEED) at {spec.width}x{spec.height}",
            "video": f"{len(frames)} frames of the held-out 720p video (seed 4242), {spec.resize} to "
            f"{spec.width}x{spec.height}, scored in frame pixels",
        },
    }
    for key, prec, target in FILES:
        path = ed.onnx_path(prec, target)
        if not path.is_file():
            continue
        sess = _session(path)
        run = lambda x, s=sess: s.run(None, {"images": x})[0]  # noqa: E731
        d = dm.predict(run, scenes.images)
        out["scenes"][key] = dm.evaluate_dets(d, scenes.boxes, scenes.classes, scenes.names, thr).to_dict()
        dv = dm.predict(run, batch)
        dv = [np.concatenate([boxes_to_frame(x[:, :4], f.shape[:2], spec), x[:, 4:]], 1) for x, f in zip(dv, frames)]
        out["video"][key] = dm.evaluate_dets(dv, vboxes, vclasses, list(CLASSES), thr).to_dict()
    return out


def speed_720p(
    ed: EngineDir, meta: EngineMeta, rounds: int = 5, block: int = 10, settle: int = 3, threads: int | None = None
) -> dict[str, Any]:
    """ms per 720p frame (host resize + infer + box mapping), fp32 vs INT8 u8s8 on ORT CPU in one interleaved run."""
    from edge_app.data.scenes import heldout_video_frames

    frame = heldout_video_frames(1)[0][0]
    spec = meta.input
    sessions = {
        k: _session(ed.onnx_path(p, t), threads, spinning=False)
        for k, p, t in (("fp32", "fp32", "any"), ("int8.cpu", "int8", "cpu"))
        if ed.onnx_path(p, t).is_file()
    }
    times: dict[str, dict[str, list[float]]] = {k: {"resize": [], "infer": [], "total": []} for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            for i in range(settle + block):
                t0 = time.perf_counter()
                x = resize_to_input(frame, spec)[None]
                t1 = time.perf_counter()
                d = s.run(None, {"images": x})[0][0]
                d = d[d[:, 4] >= 0.3]
                boxes_to_frame(d[:, :4], frame.shape[:2], spec)
                t2 = time.perf_counter()
                if i >= settle:
                    times[k]["resize"].append((t1 - t0) * 1e3)
                    times[k]["infer"].append((t2 - t1) * 1e3)
                    times[k]["total"].append((t2 - t0) * 1e3)
    res: dict[str, Any] = {
        "frame": "1280x720",
        "input": f"{spec.width}x{spec.height} {spec.resize}",
        "batch": 1,
        "threads": threads or os.cpu_count(),
        "runs": rounds * block,
    }
    for k, v in times.items():
        res[k] = {f"{part}_p50_ms": float(np.median(t)) for part, t in v.items()}
        res[k]["total_p90_ms"] = float(np.percentile(v["total"], 90))
    if "int8.cpu" in res:
        res["int8_over_fp32_total"] = res["int8.cpu"]["total_p50_ms"] / res["fp32"]["total_p50_ms"]
    return res


def format_lines(rep: dict[str, Any], speed: dict[str, Any] | None) -> list[str]:
    """Tables for the terminal."""
    lines = []
    for s in ("scenes", "video"):
        lines.append(f"{rep['sets'][s]} (P/R at score >= {rep['threshold']:.2f}):")
        for k, r in rep[s].items():
            lines.append(
                f"  {k:<9} mAP@0.5 {r['map50']:.4f}  mAP@0.5:0.95 {r['map50_95']:.4f}  P {r['precision']:.3f}  R {r['recall']:.3f}"
            )
    if speed:
        for k in ("fp32", "int8.cpu"):
            if k in speed:
                v = speed[k]
                lines.append(
                    f"720p frame, {speed['input']}, ORT CPU {speed['threads']} threads, batch 1: {k} total "
                    f"{v['total_p50_ms']:.2f} ms p50 ({v['total_p90_ms']:.2f} p90; resize {v['resize_p50_ms']:.2f}, "
                    f"infer+decode {v['infer_p50_ms']:.2f})"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", required=True, help="engines/NAME of a detector (export_detect + calibrate_detect)")
    p.add_argument("--scenes", type=int, default=500, help="held-out scenes (default 500)")
    p.add_argument("--frames", type=int, default=60, help="held-out video frames, every 5th (default 60)")
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--json", default=None, help="also write the numbers here")
    a = p.parse_args(argv)
    try:
        ed = EngineDir(a.engine).require()
        meta = ed.load_meta()
        if meta.extra.get("task") != "detect":
            raise UserError(f"'{a.engine}' is not a detector engine")
        rep = heldout_report(ed, meta, a.scenes, a.frames)
        speed = None if a.no_speed else speed_720p(ed, meta)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in format_lines(rep, speed):
        print(line)
    if a.json:
        Path(a.json).write_text(json.dumps({"heldout": rep, "speed": speed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
