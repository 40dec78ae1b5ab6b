"""Each stage of the frame loop run alone, in wall and CPU time per frame, and what their sum allows.

``bench --pipeline`` runs this beside the real loop so one report says both what every stage costs on its
own and how close the threaded loop comes to what the machine's cores allow:

    cpu_bound_fps = cores * 1000 / (sum of the stages' CPU ms per frame)
    loop_efficiency = loop frames/s / cpu_bound_fps

CPU time is the whole process's (``time.process_time``), so the threads a stage starts under it (OpenCV's,
x264's, the inference runtime's) are counted. Stages run in loop order on the same frames: decode (the
source's own reader, and PyAV's when it is installed and the source is a file, for comparison; a live
source's wall time includes waiting for its next frame, and its rate caps the bound),
preprocess / inference / postprocess (the mode's hooks at the loop's batch size), overlay, encode (the
loop's video sink: H.264 on its own thread) and the JSON line.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.errors import UserError
from edge_app.frames.labellers import Labeller
from edge_app.frames.overlay import HudInfo, OverlayConfig, build_annotators
from edge_app.frames.results import FrameResult
from edge_app.profiling.results import ALONE_STAGES, StageCosts

__all__ = ["ALONE_STAGES", "StageCosts", "cores", "measure_stages", "no_frames"]


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, as a container or ``taskset`` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Clock:
    """Wall and process-CPU seconds of the ``with`` blocks it times, summed."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> _Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def no_frames(source_uri: str) -> UserError:
    """The sentence for a source that gave no frames at all."""
    return UserError(
        f"source '{source_uri}' gave no frames; check it plays (e.g. `python run.py live --source {source_uri}`)"
    )


def _pyav_decode(path: str, n: int, clock: _Clock) -> int:
    """Decode the first ``n`` frames of the file ``path`` to BGR with PyAV (frame threads on); frames decoded."""
    import av

    got = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        with clock:
            for frame in container.decode(stream):
                frame.to_ndarray(format="bgr24")
                got += 1
                if got >= n:
                    break
    return got


def measure_stages(
    labeller: Labeller,
    source_uri: str,
    batch: int,
    workdir: Path,
    *,
    frames: int = 60,
    overlay: OverlayConfig | None = None,
) -> StageCosts:
    """Run each loop stage alone on the first ``frames`` frames of ``source_uri``; cost per frame of each."""
    from edge_app.video.sinks import JsonlSink, VideoFileSink, pyav_available
    from edge_app.video.sources import open_source

    src = open_source(source_uri)
    decode = _Clock()
    images: list[np.ndarray] = []
    try:
        it = (f.image for f in itertools.islice(src, frames))
        while True:
            with decode:
                img = next(it, None)
            if img is None:
                break
            images.append(img)
        fps = src.fps or 30.0
        decoder = type(src).__name__
        paced = float(src.fps) if src.live and src.fps else None
    finally:
        src.close()
    n = len(images)
    if n == 0:
        raise no_frames(source_uri)
    stages: dict[str, dict[str, float]] = {}

    def per_frame(c: _Clock, count: int = n) -> dict[str, float]:
        return {"wall": c.wall * 1e3 / count, "cpu": c.cpu * 1e3 / count}

    stages["decode"] = per_frame(decode)
    if pyav_available() and Path(source_uri).is_file():
        c = _Clock()
        got = _pyav_decode(source_uri, n, c)
        if got:
            stages["decode_pyav"] = per_frame(c, got)

    pre, inf, post = _Clock(), _Clock(), _Clock()
    results: list[FrameResult] = []
    for s in range(0, n, batch):
        chunk = images[s : s + batch]
        with pre:
            x, context = labeller.prepare(chunk)
        with inf:
            out = labeller.engine.infer_batched(x)
        with post:
            labels = labeller.decode({k: out[k] for k in labeller.outputs}, context)
        results.extend(FrameResult(s + i, 0.0, labs, {}) for i, labs in enumerate(labels))
    stages.update(preprocess=per_frame(pre), inference=per_frame(inf), postprocess=per_frame(post))

    info = HudInfo(stage_ms={"capture": 1.0, "preprocess": 1.0, "inference": 1.0}, end_to_end_ms=10.0, fps=30.0)
    annotators = build_annotators(overlay or OverlayConfig(), lambda: info)
    ov = _Clock()
    drawn: list[np.ndarray] = []
    for img, res in zip(images, results):
        with ov:
            for a in annotators:
                img = a.annotate(img, res)
        drawn.append(img)
    stages["overlay"] = per_frame(ov)

    h, w = images[0].shape[:2]
    enc, js = _Clock(), _Clock()
    video = VideoFileSink(workdir / "stages-alone.mp4", fps, (w, h))
    try:
        with enc:
            for img, res in zip(drawn, results):
                video.write(img, res)
            video.close()  # the encoder's queue and lookahead are drained inside the timed block
    finally:
        video.close()
    with JsonlSink(workdir / "stages-alone.jsonl") as sink, js:
        for img, res in zip(drawn, results):
            sink.write(img, res)
    stages["encode"] = per_frame(enc)
    stages["jsonl"] = per_frame(js)
    return StageCosts(frames=n, cores=cores(), stages=stages, decoder=decoder, paced_fps=paced)
