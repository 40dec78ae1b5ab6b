"""The frame loop: source -> preprocess -> Engine.infer -> postprocess -> annotators -> sinks.

This first version is single-threaded and serves offline annotation of video files in classify mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.overlay import LabelAnnotator, LatencyAnnotator
from edge_app.postprocess import FrameResult, topk
from edge_app.preprocess import to_batch
from edge_app.profiling import StageTimer, percentiles
from edge_app.runtime.base import Engine
from edge_app.video.sinks import JsonlSink, VideoFileSink
from edge_app.video.sources import open_source


@dataclass
class AnnotateConfig:
    """Options of ``annotate``; defaults are the classify-mode settings users of imagenet apps expect."""

    top_k: int = 3
    max_frames: int = 0  # 0: the whole file
    progress: bool = True


def annotate_video(engine: Engine, video: str | Path, out_video: str | Path, out_jsonl: str | Path,
                   cfg: AnnotateConfig = AnnotateConfig()) -> dict[str, Any]:
    """Label every frame of ``video``; write an annotated video and JSON lines; return a summary."""
    src = open_source(str(video))
    timer = StageTimer(window=1_000_000)
    annotators = [LabelAnnotator(cfg.top_k), LatencyAnnotator()]
    total = src.frame_count if not cfg.max_frames else min(cfg.max_frames, src.frame_count or cfg.max_frames)
    t0 = time.perf_counter()
    n = 0
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=Path(video).name, unit="frame", leave=False)
    try:
        with VideoFileSink(out_video, src.fps, src.size) as vs, JsonlSink(out_jsonl) as js:
            for frame in src:
                if cfg.max_frames and n >= cfg.max_frames:
                    break
                with timer.stage("preprocess"):
                    batch = to_batch([frame.image], engine.meta.input)
                with timer.stage("inference"):
                    logits = engine.infer(batch)
                with timer.stage("postprocess"):
                    labels = topk(logits, engine.meta.labels, cfg.top_k)[0]
                result = FrameResult(frame.index, frame.capture_time, labels, dict(timer.frame_timings))
                with timer.stage("overlay"):
                    for a in annotators:
                        a.annotate(frame.image, result)
                with timer.stage("write"):
                    vs.write(frame.image, result)
                result.timings = timer.new_frame()
                js.write(None, result)
                n += 1
                if bar is not None:
                    bar.update(1)
    finally:
        src.close()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    inf = list(timer.stats["inference"].samples) if "inference" in timer.stats else []
    return {"frames": n, "seconds": wall, "fps": n / wall if wall > 0 else 0.0,
            "inference_ms": percentiles(inf), "video": str(out_video), "jsonl": str(out_jsonl)}
