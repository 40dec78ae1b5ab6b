#!/usr/bin/env python3
"""Pipeline throughput vs engine-only throughput, side by side in one run, and live end-to-end latency.

    .venv/bin/python scripts/pipeline_vs_engine.py --engine engines/demo --video data/synthetic_video.mp4 --batch 8

1. engine only: ``engine.infer`` on ready-made batches of the video's frames (already resized), and the
   whole labelling step (resize + infer + top-k) on decoded frames; no decoding, drawing or encoding;
2. the threaded pipeline on the same file, same batch and mode: decode -> label -> overlay -> MP4 + JSON lines;
3. engine only again, so a change in machine load during the run shows up as a gap between 1 and 3.
Then ``--live S`` seconds of ``synthetic`` (camera-paced, 30 FPS) through the pipeline: end-to-end
latency (capture -> written) p50/p99. Warm-up calls are excluded everywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge_app.frames.labellers import make_labeller, mode_names  # noqa: E402
from edge_app.frames.pipeline import PipelineConfig, run_pipeline  # noqa: E402
from edge_app.geometry import to_batch  # noqa: E402
from edge_app.runtime import open_engine  # noqa: E402
from edge_app.video.sinks import JsonlSink, VideoFileSink  # noqa: E402
from edge_app.video.sources import open_source  # noqa: E402


def read_frames(video: str, n: int) -> list[np.ndarray]:
    """The first ``n`` decoded frames."""
    cap = cv2.VideoCapture(video)
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


def timed_loop(step, batches: list, seconds: float, warmup: int = 3) -> float:
    """Frames/s of ``step(batch)`` cycling over ``batches`` for ``seconds`` after ``warmup`` calls."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    n, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = batches[i % len(batches)]
        step(b)
        n += len(b)
        i += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    """Print engine-only and pipeline throughput, their ratio, and live end-to-end latency."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="engines/demo")
    p.add_argument("--video", default="data/synthetic_video.mp4")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--mode", default="classify", choices=mode_names())
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per engine-only run")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--no-video", action="store_true", help="pipeline writes JSON lines only (no MP4 encoding)")
    p.add_argument("--live", type=float, default=20.0, help="seconds of `live --source synthetic --save` (0: skip)")
    a = p.parse_args()

    with open_engine(a.engine, a.backend, a.precision) as eng:
        print(f"engine: {eng.description}; mode {a.mode}; batch {a.batch}")
        frames = read_frames(a.video, 64)
        lab = make_labeller(eng, a.mode)  # the mode's default settings, as the pipeline runs below
        fb = [frames[i : i + a.batch] for i in range(0, len(frames) - a.batch + 1, a.batch)]
        ready = [to_batch(f, eng.meta.input) for f in fb]
        runs = []
        for label in ("before", "after"):
            if label == "after":
                with tempfile.TemporaryDirectory() as d:
                    src = open_source(a.video)
                    sinks = [JsonlSink(Path(d) / "out.jsonl")]
                    if not a.no_video:
                        sinks.insert(0, VideoFileSink(Path(d) / "out.mp4", src.fps, src.size))
                    rep = run_pipeline(make_labeller(eng, a.mode), src, sinks, PipelineConfig(batch=a.batch))
            infer_fps = timed_loop(eng.infer, ready, a.seconds) if a.mode == "classify" else float("nan")
            step_fps = timed_loop(lambda b: lab.label(b), fb, a.seconds)
            runs.append((infer_fps, step_fps))
            print(
                f"engine only ({label} the pipeline run): infer {infer_fps:.1f} frames/s, label step (resize+infer+post) {step_fps:.1f} frames/s"
            )
        infer_fps = float(np.mean([r[0] for r in runs]))
        step_fps = float(np.mean([r[1] for r in runs]))
        outputs = "JSON lines" if a.no_video else "MP4 + JSON lines"
        print(
            f"pipeline ({a.video}, decode + label + overlay + {outputs}): {rep.frames_written} frames in "
            f"{rep.seconds:.2f}s = {rep.throughput_fps:.1f} frames/s"
        )
        if a.mode == "classify":
            print(f"ratio pipeline / engine-only infer: {rep.throughput_fps / infer_fps:.2f}")
        print(f"ratio pipeline / engine-only label step: {rep.throughput_fps / step_fps:.2f}")
        for k, st in rep.stages.items():
            print(f"  {k:12s} p50 {st['p50']:7.2f} ms  p99 {st['p99']:7.2f} ms (per frame)")

        if a.live > 0:
            src = open_source("synthetic")
            with tempfile.TemporaryDirectory() as d:  # output = an MP4 being written, as `live --save`
                sinks = [VideoFileSink(Path(d) / "live.mp4", src.fps, src.size)]
                rep = run_pipeline(make_labeller(eng, a.mode), src, sinks, PipelineConfig(batch=1, duration=a.live))
            e = rep.end_to_end_ms
            print(
                f"live --source synthetic ({a.mode}, {a.live:g}s): {rep.frames_written} written, {rep.frames_dropped} dropped, "
                f"{rep.throughput_fps:.1f} FPS; end-to-end latency p50 {e['p50']:.1f} ms  p99 {e['p99']:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
